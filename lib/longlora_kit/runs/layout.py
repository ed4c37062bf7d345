"""The names inside a run folder (``--out``), in one place so every module spells them the same.

::

    runs/pretrain/
        .longlora-kit-run    marker: "the kit made this folder" (only such folders are --overwrite'n)
        .longlora-kit.lock   held (flock) by the run writing here; names its pid
        train_config.json    the run's fingerprint: the settings and the contents of its inputs
        metrics.jsonl        one JSON row per logged step
        checkpoint/          trainable weights, optimiser, scheduler, RNG states, step (to resume)
        adapter/             LoRA methods: the peft adapter (lora.save)
        model/               the final model, merged, with its tokenizer (save_pretrained)
        result.json          written last: the run is finished

>>> f"{MODEL_DIR}/config.json"
'model/config.json'
"""

CONFIG_FILE, METRICS_FILE, RESULT_FILE = "train_config.json", "metrics.jsonl", "result.json"
CHECKPOINT_DIR, MODEL_DIR, ADAPTER_DIR = "checkpoint", "model", "adapter"
MARKER_FILE, LOCK_FILE = ".longlora-kit-run", ".longlora-kit.lock"
# Folders written by atomic_write, swapped in by rename: a kill can leave them behind; claim() recovers them.
SWAPPED_DIRS = (CHECKPOINT_DIR, ADAPTER_DIR, MODEL_DIR)
