"""Configs: the shared defaults (`defaults.base_config`), named variants, and the field
checks and user errors every layer raises (`checks`). The bottom layer: imports no other
part of aevb."""
