"""The run folder (``--out``): its layout, atomic writes, checkpoints, metrics, and claiming it.

The machinery under ``train.train``, one module per idea:

- ``layout``       the names of the files and folders inside a run folder
- ``atomic``       :func:`atomic_write`, the one way the kit writes a file or folder it keeps, and
                   :func:`recover`, which finishes a folder swap a kill interrupted
- ``metrics``      ``metrics.jsonl``: append a row, read it back, cut it back to a checkpoint
- ``checkpoint``   save / load everything a run needs to resume exactly (sharded runs: accelerate's own)
- ``fingerprint``  the run's settings plus content hashes of its base model and tokenizer
- ``claim``        may this run write into ``--out``? (marker file, ``--overwrite`` rules, lock)

What these promise, and the test behind each promise: docs/reliability.md.
"""

from .atomic import atomic_write, read_json, recover, write_text
from .checkpoint import (
    load_checkpoint,
    load_engine_checkpoint,
    save_checkpoint,
    save_engine_checkpoint,
    uses_engine_state,
)
from .claim import check_out_dir, claim_out_dir, read_config
from .fingerprint import content_hash, run_fingerprint, tokenizer_hash
from .layout import (
    ADAPTER_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    MARKER_FILE,
    METRICS_FILE,
    MODEL_DIR,
    RESULT_FILE,
)
from .metrics import append_row, read_metrics, truncate

__all__ = [
    "ADAPTER_DIR", "CHECKPOINT_DIR", "CONFIG_FILE", "LOCK_FILE", "MARKER_FILE", "METRICS_FILE", "MODEL_DIR",
    "RESULT_FILE", "append_row", "atomic_write", "check_out_dir", "claim_out_dir", "content_hash",
    "load_checkpoint", "load_engine_checkpoint", "read_config", "read_json", "read_metrics", "recover",
    "run_fingerprint", "save_checkpoint", "save_engine_checkpoint", "tokenizer_hash", "truncate", "uses_engine_state",
    "write_text",
]
