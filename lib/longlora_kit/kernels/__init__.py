"""Fast S2-Attn backends, one level below the readable :func:`longlora_kit.s2attn.shifted_sparse_attention`.

Each computes exactly what the readable roll / reshape / SDPA / roll-back function computes (the tests
in ``tests/test_kernels.py`` check forward and backward, both variants, GQA and odd head counts):

- :mod:`.rows`  (``backend="sdpa"``, the default): the groups are a fixed permutation of the rows of
  q, k, v, so the whole shuffle is one gather in and one scatter out, and every group becomes one
  "batch row" of a single ``scaled_dot_product_attention(..., is_causal=True)`` call.
- :mod:`.flash` (``backend="flash"``): the same gather, groups packed back to back for flash-attn's
  variable-length kernel (CUDA, fp16/bf16).
- :mod:`.flex`  (``backend="flex"``): FlexAttention with a block mask compiled from the pattern's mask
  function in :mod:`longlora_kit.patterns`.

They take a :class:`longlora_kit.patterns.Grouping` (G, variant, which heads shift) and keyword
``scaling``/``dropout``. Input checks live in :func:`longlora_kit.s2attn.s2_attention`, the one entry
point; call the kernels directly only with inputs it accepts.
"""
