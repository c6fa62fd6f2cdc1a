"""Convolutions for the conv models, with their gradients written out.

One primitive, a `valid` convolution with a stride (`conv_valid`), has a custom VJP: the
input gradient is a convolution of the (dilated, padded) output gradient with the flipped
kernel, the kernel gradient one matmul of the input's patches with the output gradient.
Transposed convolutions (`conv_transpose2d`) get the same treatment. XLA's own gradient
convolutions run 10-25x slower on CPU inside the compiled epoch loop (a `lax.scan`) than
outside it; these run at the same speed in both places. `tests/test_conv.py` checks them
against XLA's and Flax's; `model.conv.gradients='xla'` uses XLA's instead, and
`benchmarks/throughput.py` times both. Arrays are NHWC, kernels HWIO.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    return lax.conv_general_dilated(x, w, (stride, stride), "VALID", dimension_numbers=_DIMS)


def _flipped(w: jax.Array) -> jax.Array:
    """w [k_h, k_w, C_in, C_out] rotated 180 degrees, in and out swapped: the kernel whose
    convolution is the transpose of w's."""
    return jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)


def _patches(a: jax.Array, starts_h, starts_w, n1: int, n2: int, stride: int) -> jax.Array:
    """[N * n1 * n2, len(starts_h) * len(starts_w) * C]: for each (row, column) start, the
    n1 x n2 pixels of a [N, H, W, C] from there with the stride, side by side."""
    return jnp.concatenate(
        [a[:, i:i + stride * (n1 - 1) + 1:stride, j:j + stride * (n2 - 1) + 1:stride]
         for i in starts_h for j in starts_w], axis=-1).reshape(n1 * n2 * a.shape[0], -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_valid(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """x [N, H, W, C_in] * w [k_h, k_w, C_in, C_out], `valid`, stride s -> [N, H', W', C_out]."""
    return _conv(x, w, stride)


def _conv_valid_fwd(x, w, stride):
    return _conv(x, w, stride), (x, w)


def _conv_valid_bwd(stride, residuals, dy):
    x, w = residuals
    (kh, kw, _, c_out), (_, h, wd, _), (_, n1, n2, _) = w.shape, x.shape, dy.shape
    # Rows and columns of x that no window reached (when (H - k) % s != 0) get gradient 0.
    rest_h, rest_w = h - ((n1 - 1) * stride + kh), wd - ((n2 - 1) * stride + kw)
    zero = jnp.zeros((), dy.dtype)
    dy_full = lax.pad(dy, zero, ((0, 0, 0), (kh - 1, kh - 1 + rest_h, stride - 1),
                                 (kw - 1, kw - 1 + rest_w, stride - 1), (0, 0, 0)))
    dx = _conv(dy_full, _flipped(w), 1)
    patches = _patches(x, range(kh), range(kw), n1, n2, stride)        # [N n1 n2, kh kw C]
    dw = (patches.T @ dy.reshape(-1, c_out)).reshape(w.shape)
    return dx, dw


conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


def conv2d(x: jax.Array, w: jax.Array, stride: int, padding: str,
           explicit: bool = True) -> jax.Array:
    """A strided convolution with 'same' (XLA's split of the padding) or 'valid' padding;
    its gradients `conv_valid`'s (`explicit`) or XLA's own."""
    if padding == "same":
        pads = lax.padtype_to_pads(x.shape[1:3], w.shape[:2], (stride, stride), "SAME")
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return (conv_valid if explicit else _conv)(x, w, stride)


def _conv_transpose(x: jax.Array, w: jax.Array, stride: int,
                    padding: tuple[tuple[int, int], ...]) -> jax.Array:
    return lax.conv_transpose(x, w, (stride, stride), padding, dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_transpose2d(x, w, stride, padding):
    return _conv_transpose(x, w, stride, padding)


def _conv_transpose2d_fwd(x, w, stride, padding):
    return _conv_transpose(x, w, stride, padding), (x, w)


def _conv_transpose2d_bwd(stride, padding, residuals, dy):
    """From out[o] = sum_t x[a] w[t] over o = low + a S - t: dx[a] = sum_t w[t] dy[low + aS
    - t], a stride-S convolution of dy with the flipped kernel, and dw[t] = sum_a x[a]^T
    dy[low + aS - t], one matmul of x with dy's strided patches: no dilation zeros."""
    x, w = residuals
    (k, _, c_in, c_out), (_, n1, n2, _) = w.shape, x.shape
    (lo_h, _), (lo_w, _) = padding
    margin = k + stride
    dy_pad = jnp.pad(dy, ((0, 0), (margin, margin + n1 * stride),
                          (margin, margin + n2 * stride), (0, 0)))
    start_h, start_w = margin + lo_h - (k - 1), margin + lo_w - (k - 1)
    window = dy_pad[:, start_h:start_h + (n1 - 1) * stride + k,
                    start_w:start_w + (n2 - 1) * stride + k]
    dx = _conv(window, _flipped(w), stride)
    patches = _patches(dy_pad, [margin + lo_h - i for i in range(k)],
                       [margin + lo_w - j for j in range(k)], n1, n2, stride)
    dw = (x.reshape(-1, c_in).T @ patches).reshape(c_in, k, k, c_out).transpose(1, 2, 0, 3)
    return dx, dw


_conv_transpose2d.defvjp(_conv_transpose2d_fwd, _conv_transpose2d_bwd)


def conv_transpose2d(x: jax.Array, w: jax.Array, stride: int,
                     padding: list[tuple[int, int]], explicit: bool = True) -> jax.Array:
    """`flax.linen.ConvTranspose` with explicit padding (x dilated by the stride, padded by
    (low, high) per axis, correlated with w [k, k, C_in, C_out]); its gradients written
    out like `conv_valid`'s (`explicit`) or XLA's own."""
    padding = tuple(tuple(p) for p in padding)
    return (_conv_transpose2d if explicit else _conv_transpose)(x, w, stride, padding)


def max_pool(x: jax.Array, p: int) -> jax.Array:
    """Max over p x p windows with stride p, `valid` (the last H % p rows dropped):
    `flax.linen.max_pool`'s values, by a reshape whose gradient is cheap on CPU."""
    n, h, w, c = x.shape
    x = x[:, :h // p * p, :w // p * p]
    return x.reshape(n, h // p, p, w // p, p, c).max(axis=(2, 4))
