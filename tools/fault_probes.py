"""Re-run the 26 cases of issue 15 (9 data-loss / silent-wrong, 17 raw-traceback) and give each a verdict.

    PYTHONPATH=$PWD/lib OMP_NUM_THREADS=1 python tools/fault_probes.py [--out probes.md]

Everything runs in a temporary folder on the smoke profile (one pre-trained smoke base, copied where a
case changes it). Most CLI probes call ``longlora_kit.cli.main(argv)`` in this process, the function
``python -m longlora_kit.cli`` runs, with stderr captured; an exception escaping it is recorded as the
traceback the real command would print. The cases that need a real kill, two processes at once, or a
file-size limit run ``python -m longlora_kit.cli`` (or a small ``python -c``) as a subprocess.

Verdicts: FIXED = a clear error naming the parameter/file and the fix, or the correct behaviour;
NOT FIXED = a raw traceback ("Traceback (most recent call last)"), a silent wrong result or data loss;
NOT REPRODUCED = the case could not be set up here (the "what happened" column says why).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("LONGLORA_KIT_PROFILE", "smoke")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

TRACEBACK = "Traceback (most recent call last)"
FIXED, NOT_FIXED, NOT_REPRODUCED = "FIXED", "NOT FIXED", "NOT REPRODUCED"
RESULTS: list[tuple[str, str, str, str]] = []  # (id, case, what happened, verdict)
WORK: Path | None = None  # the temporary folder the probes run in


class Outcome:
    """What one command did: exit code, stdout, stderr."""

    def __init__(self, rc: int, out: str, err: str):
        self.rc, self.out, self.err = rc, out, err

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.err

    @property
    def last(self) -> str:
        noise = ("it/s]", "USDT:")  # progress bars, profiler chatter
        lines = [line for line in self.err.strip().splitlines() if line.strip() and not any(n in line for n in noise)]
        return lines[-1].strip() if lines else ""

    def __str__(self) -> str:
        return f"exit {self.rc}: {self.last[:160]}" if self.last else f"exit {self.rc}"


def cli(*argv: str) -> Outcome:
    """``longlora-kit ARGV`` in this process (the same ``main`` as ``python -m longlora_kit.cli``)."""
    from longlora_kit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exit_:  # argparse
            rc = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # what the real command would print
            err.write(traceback.format_exc())
            rc = 1
    return Outcome(rc, out.getvalue(), err.getvalue())


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 240) -> Outcome:
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, err)


def call(fn, *args, **kw) -> str:
    """``fn(*args, **kw)`` as a one-line outcome: ``ok: value`` or ``ExceptionType: message``."""
    try:
        return f"ok: {fn(*args, **kw)!r}"[:160]
    except Exception as err:  # noqa: BLE001 (a probe records whatever is raised)
        return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def record(case_id: str, case: str, what: str, ok: bool, verdict: str | None = None) -> None:
    verdict = verdict or (FIXED if ok else NOT_FIXED)
    what = what.replace(str(WORK), "$TMP") if WORK else what  # the temporary folder, shortened
    RESULTS.append((case_id, case, what.replace("|", "/").replace("\n", " "), verdict))
    print(f"[{case_id}] {verdict}: {case} -- {what[:200]}", file=sys.stderr, flush=True)


def clear(o: Outcome, *words: str) -> bool:
    """A clear refusal: non-zero exit, no traceback, the message names each of ``words``."""
    return o.rc != 0 and not o.traceback and all(w.lower() in o.err.lower() for w in words)


def rows(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


SMOKE = ("--profile", "smoke", "--no-progress")


# --------------------------------------------------------------------------------------------------
# The cases. Each function probes one case and calls record().


def d1_and_d3(w: Path) -> None:
    """D3: a second run into a busy --out; then D1: kill the first (no checkpoint yet) and re-run."""
    out = w / "busy"
    argv = ["-m", "longlora_kit.cli", "pretrain", *SMOKE, "--out", str(out), "--steps", "400"]
    first = spawn(argv)
    while len(rows(out)) < 3 and first.poll() is None:
        time.sleep(0.05)
    second = finish(spawn(argv))
    running = first.poll() is None
    ok = clear(second, "pid") and running
    record("D3", "two runs into one --out at the same time", f"second: {second}; first still running: {running}", ok)
    if not running:
        return record("D1", "killed before the first checkpoint, re-run: duplicated rows", "first run ended "
                      "before it could be killed", False, NOT_REPRODUCED)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = len(rows(out))
    again = cli("pretrain", *SMOKE, "--out", str(out), "--steps", "400", "--stop-after", str(killed_at + 5))
    steps = rows(out)
    ok = again.rc == 0 and steps == list(range(1, killed_at + 6))
    record("D1", "killed before the first checkpoint (--save-every 0), re-run: duplicated metrics rows",
           f"killed after {killed_at} rows; re-run {again}, stopping at {killed_at + 5}: metrics.jsonl has "
           f"{len(steps)} rows, steps unique and in order: {steps == sorted(set(steps))}", ok)


KILL_AT_SWAP = """
import os, signal, sys
from longlora_kit.runs import atomic
from longlora_kit.cli import main
def kill(event, path):
    if event == "moved aside" and path.name.startswith(".checkpoint.old-"):
        os.kill(os.getpid(), signal.SIGKILL)
atomic._boundary = kill
sys.exit(main(sys.argv[1:]))
"""


def d2(w: Path) -> None:
    """A kill between the two renames of a checkpoint swap; the next run must finish the swap and resume."""
    out = w / "swap"
    args = ["pretrain", *SMOKE, "--out", str(out), "--steps", "30", "--save-every", "10"]
    killed = finish(spawn(["-c", KILL_AT_SWAP, *args]))
    before = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    state = sorted(p.name for p in out.iterdir() if "checkpoint" in p.name)
    again = cli(*args)
    after = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kept = after[: len(before)] == before  # the killed run's rows survive: it resumed, not restarted
    ok = killed.rc == -signal.SIGKILL and again.rc == 0 and kept and [r["step"] for r in after] == list(range(1, 31))
    swap = (f"checkpoint: killed at the swap of step 20 (left {state}); re-run {again}; the killed run's "
            f"{len(before)} rows kept: {kept}; {len(after)} rows for 30 steps")
    model = out / "model"
    shutil.copytree(model, w / "model-copy")
    (out / "result.json").unlink()  # a re-save of model/ killed between its renames: no result.json yet,
    os.rename(model, out / ".model.old-beef")  # model/ set aside,
    shutil.copytree(w / "model-copy", out / ".model.tmp-beef")  # ... and the new copy complete beside it
    again = cli(*args)
    back = (model / "model.safetensors").is_file() and not list(out.glob(".model.*"))
    record("D2", "a kill between the two renames of a checkpoint (or model/) swap: the next run starts over",
           f"{swap}. model/: swap interrupted by hand, re-run {again}, model/ back and no leftovers: {back}",
           ok and again.rc == 0 and back)


def d4(w: Path, base_run: Path) -> None:
    """An extension of a base that was re-trained since must not be handed back."""
    base = w / "d4-base"
    shutil.copytree(base_run, base)
    ext = ["extend", *SMOKE, "--base", str(base / "model"), "--out", str(w / "d4-ext"), "--steps", "3"]
    first = cli(*ext)
    retrain = cli("pretrain", *SMOKE, "--out", str(base), "--overwrite", "--seed", "1", "--steps", "5")
    again = cli(*ext)
    ok = first.rc == 0 and retrain.rc == 0 and clear(again, "base")
    record("D4", "extend reused after its base was re-trained (pretrain --overwrite)",
           f"first extend {first.rc}; re-train {retrain.rc}; same extend again: {again}", ok)


def d5(w: Path) -> None:
    folder = w / "not-a-run"
    (folder / "sub").mkdir(parents=True)
    (folder / "train_config.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    (folder / "sub" / "data.csv").write_text("1,2")
    o = cli("pretrain", *SMOKE, "--out", str(folder), "--overwrite", "--steps", "2")
    intact = (folder / "notes.txt").is_file() and (folder / "sub" / "data.csv").is_file()
    record("D5", "--overwrite deletes a non-kit folder holding a train_config.json",
           f"{o}; other files intact: {intact}", o.rc != 0 and not o.traceback and intact)


def d6(w: Path, base_run: Path) -> None:
    x = w / "d6"
    shutil.copytree(base_run, x)
    o = cli("extend", *SMOKE, "--base", str(x / "model"), "--out", str(x), "--overwrite", "--steps", "2")
    kept = (x / "model" / "model.safetensors").is_file()
    record("D6", "extend --base X/model --out X --overwrite deletes the base",
           f"{o}; base model kept: {kept}", clear(o, "--base") or (o.rc != 0 and not o.traceback and kept))


def d7(w: Path, base_run: Path, ext_run: Path) -> None:
    outs = []
    for label, path in (("typo", str(ext_run) + "/modle"), ("run folder", str(ext_run)),
                        ("adapter folder", str(ext_run / "adapter"))):
        o = cli("eval", *SMOKE[:2], "--base", str(base_run / "model"), "--extended", path, "--out", str(w / "ev"))
        outs.append((label, o))
    ok = all(clear(o, "--extended") for _, o in outs)
    record("D7", "eval --extended typo / run folder / adapter folder silently drops the LongLoRA row",
           "; ".join(f"{label}: {o}" for label, o in outs), ok)


def d8() -> None:
    from transformers import LlamaConfig

    from longlora_kit.rope import extend_config

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=128)
    got = {f: call(extend_config, cfg, 512, factor=f) for f in (math.nan, math.inf)}
    ok = all(v.startswith("ValueError") and "factor" in v for v in got.values())
    record("D8", "rope.extend_config(cfg, 512, factor=nan / inf) accepted",
           "; ".join(f"factor={k}: {v}" for k, v in got.items()), ok)


def d9() -> None:
    import torch

    from longlora_kit import s2attn
    from longlora_kit.families import build, tiny_config

    model = s2attn.enable(build(tiny_config("llama")), "s2_attn_paper").train()
    torch.manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (2, 32))
    mask = torch.ones_like(ids)
    mask[1, 24:] = 0  # the second sequence is padded at its end
    with torch.no_grad():
        alone = model(ids[:1]).logits[0]
        batched = model(ids, attention_mask=mask).logits[0]
    diff = (alone - batched).abs().max().item()
    record("D9", "s2_attn_paper: an unpadded sequence's logits change when another one is padded",
           f"max |logits alone - logits in a padded batch| = {diff:.2e} (was up to 0.125)", diff < 1e-5)


def r1(w: Path, base_run: Path) -> None:
    outs = []
    for label, damage in (("garbage safetensors", lambda m: (m / "model.safetensors").write_bytes(b"\x00garbage" * 9)),
                          ("truncated safetensors", lambda m: os.truncate(m / "model.safetensors", 4096)),
                          ("bad config.json", lambda m: (m / "config.json").write_text("{not json"))):
        model = w / f"r1-{label.split()[0]}-{label.split()[1][:4]}"
        shutil.copytree(base_run / "model", model)
        damage(model)
        out = w / f"r1-out-{model.name}"
        o = cli("extend", *SMOKE, "--base", str(model), "--out", str(out), "--steps", "2")
        outs.append((label, o, clear(o, str(model)) and not out.exists()))
    record("R1", "a corrupt or truncated --base (garbage/truncated safetensors, bad config.json)",
           "; ".join(f"{label}: {o}" for label, o, _ in outs), all(ok for *_, ok in outs))


def r2(w: Path, base_run: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = w / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=512, n_positions=64)).save_pretrained(gpt2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(base_run / "model" / name, gpt2 / name)
    o = cli("extend", *SMOKE, "--base", str(gpt2), "--out", str(w / "r2-out"), "--steps", "2")
    record("R2", "a non-Llama --base (GPT-2)", str(o), clear(o, "gpt2") and not (w / "r2-out").exists())


def _ignore_xfsz():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, resource.RLIM_INFINITY))


def r3(w: Path) -> None:
    afile = w / "a-file"
    afile.write_text("x")
    outs = [("a file", cli("pretrain", *SMOKE, "--out", str(afile), "--steps", "2")),
            ("under a file", cli("pretrain", *SMOKE, "--out", str(afile / "run"), "--steps", "2"))]
    ok = all(clear(o, str(afile)) for _, o in outs)
    # a full disk: a 3 MB file-size limit makes the 5 MB optimizer.pt write fail (EFBIG, as ENOSPC would)
    full = w / "full"
    o = finish(spawn(["-m", "longlora_kit.cli", "pretrain", *SMOKE, "--out", str(full), "--steps", "4"],
                     preexec_fn=_ignore_xfsz))
    outs.append(("full disk (file-size limit)", o))
    ok = ok and o.rc != 0 and not o.traceback and str(full) in o.err
    if os.geteuid() == 0:
        readonly = ("read-only: not reproduced (running as root, which writes into a 0555 folder anyway; the "
                    "interpreter lives under /root, so the run cannot drop to an unprivileged user)")
    else:
        ro = w / "ro"
        ro.mkdir(mode=0o555)
        o = cli("pretrain", *SMOKE, "--out", str(ro / "run"), "--steps", "2")
        outs.append(("read-only", o))
        ok = ok and clear(o, str(ro))
        readonly = ""
    record("R3", "a bad --out (a file, a path under a file, a read-only mount, a full disk)",
           "; ".join(f"{label}: {o}" for label, o in outs) + (f"; {readonly}" if readonly else ""), ok)


def r4_r16(w: Path) -> None:
    """Tampered checkpoints (R4) and leftover temporary folders (R15), on an interrupted run."""
    run = w / "partial"
    args = ("pretrain", *SMOKE, "--steps", "20", "--save-every", "5")
    made = cli(*args, "--out", str(run), "--stop-after", "10")
    assert made.rc == 0, made.err

    def tamper(label, damage, expect):
        copy = w / f"r4-{len(outs)}"
        shutil.copytree(run, copy)
        damage(copy)
        o = cli(*args, "--out", str(copy), "--stop-after", "12")
        outs.append((label, o, expect(o, copy)))

    outs: list = []
    ck = "checkpoint"
    tamper("partial last metrics line", lambda c: (c / "metrics.jsonl").open("a").write('{"step": 11, "lo'),
           lambda o, c: o.rc == 0 and rows(c) == list(range(1, 13)))
    tamper("garbage state.json", lambda c: (c / ck / "state.json").write_text("garbage"),
           lambda o, c: clear(o, "state.json"))
    tamper("garbage train_config.json", lambda c: (c / "train_config.json").write_text("garbage"),
           lambda o, c: clear(o, "train_config.json"))
    tamper("truncated optimizer.pt", lambda c: os.truncate(c / ck / "optimizer.pt", 1000),
           lambda o, c: clear(o, "optimizer.pt"))
    tamper("missing trainable.safetensors", lambda c: (c / ck / "trainable.safetensors").unlink(),
           lambda o, c: clear(o, "trainable.safetensors"))
    record("R4", "tampered checkpoints (partial metrics line, garbage state.json/train_config.json, truncated "
           "optimizer.pt, missing trainable.safetensors)", "; ".join(f"{label}: {o}" for label, o, _ in outs),
           all(ok for *_, ok in outs))

    left = w / "leftovers"
    shutil.copytree(run, left)
    for name in (".checkpoint.tmp-0bad", ".model.tmp-0bad"):
        (left / name).mkdir()
        (left / name / "half.bin").write_bytes(b"x")
    o = cli(*args, "--out", str(left))
    remaining = sorted(p.name for p in left.iterdir() if ".tmp-" in p.name or ".old-" in p.name)
    record("R16", "temporary folders (.checkpoint.tmp-*, .model.tmp-*) never cleaned",
           f"re-run {o}; leftovers after: {remaining}", o.rc == 0 and not remaining)


def r5(w: Path, ext_run: Path) -> None:
    from longlora_kit import lora
    from longlora_kit.evaluate import load_for_eval

    outs = []

    def probe(label, damage):
        adapter = w / f"r5-{len(outs)}"
        shutil.copytree(ext_run / "adapter", adapter)
        damage(adapter)
        base = load_for_eval(ext_run / "model")
        outs.append((label, call(lora.load, base, adapter)))

    probe("missing adapter file", lambda a: (a / "adapter_model.safetensors").unlink())
    probe("garbage longlora_run.json", lambda a: (a / "longlora_run.json").write_text("garbage"))

    def edit_rank(a):
        cfg = json.loads((a / "adapter_config.json").read_text())
        cfg["r"] = cfg["r"] * 2
        (a / "adapter_config.json").write_text(json.dumps(cfg))

    probe("edited rank", edit_rank)
    ok = all(v.startswith("ValueError") and "Repo id" not in v for _, v in outs)
    record("R5", "lora.load with a missing adapter file, garbage longlora_run.json, an edited rank",
           "; ".join(f"{label}: {v}" for label, v in outs), ok)


def r6(w: Path, base_run: Path) -> None:
    start = time.perf_counter()
    o = cli("eval", *SMOKE[:2], "--base", str(base_run / "model"), "--extended", str(base_run / "model"),
            "--model", f"other={w}/missing-model", "--out", str(w / "r6"))
    seconds = time.perf_counter() - start
    evaluated = "perplexity" in o.out.lower() or (w / "r6" / "eval.json").exists()
    record("R6", "eval arguments that fail only after the other models were evaluated",
           f"{o} after {seconds:.1f} s; anything evaluated first: {evaluated}",
           clear(o, "--model other") and not evaluated)


def r7() -> None:
    import torch

    from longlora_kit.s2attn import s2_attention

    q = torch.randn(1, 2, 16, 8)
    bad = {
        "head_dim": (q, torch.randn(1, 2, 16, 4), torch.randn(1, 2, 16, 4), None),
        "value length": (q, q, torch.randn(1, 2, 12, 8), None),
        "batch": (q, torch.randn(2, 2, 16, 8), torch.randn(2, 2, 16, 8), None),
        "int dtype": (q.long(), q.long(), q.long(), None),
        "mask shape": (q, q, q, torch.ones(1, 16, 16, dtype=torch.bool)),
    }
    got = {k: call(s2_attention, a, b, c, 4, attention_mask=m) for k, (a, b, c, m) in bad.items()}
    ok = all(v.startswith("ValueError") for v in got.values())
    record("R7", "s2_attention with mismatched head-dim/value length/batch, int dtype, wrong-shaped mask",
           "; ".join(f"{k}: {v}" for k, v in got.items()), ok)


def r8_r9_r10(w: Path) -> None:
    for case_id, case, flags, word in (
        ("R8", "--save-every -1 accepted", ("--save-every", "-1"), "save_every"),
        ("R9", "attention_pattern='bogus' fails only at the first step after --out was claimed",
         ("--attention", "s2", "--attention-pattern", "bogus"), "attention_pattern"),
        ("R10", "loss_chunk=0 fails only at the first step after --out was claimed", ("--loss-chunk", "0"), "loss_chunk"),
    ):
        out = w / f"{case_id}-out"
        o = cli("pretrain", *SMOKE, "--out", str(out), "--steps", "2", *flags)
        record(case_id, case, f"{o}; --out created: {out.exists()}", clear(o, word) and not out.exists())


def _suggested(message: str) -> tuple[list[int], bool]:
    """The lengths ``L=n`` the fix part of ``message`` (after its last "use ") suggests, and whether it
    suggests any fractional length or group size."""
    fix = message.rsplit("use ", 1)[-1]
    return [int(x) for x in re.findall(r"L=(\d+)(?!\.)", fix)], bool(re.search(r"[LG]=\d+\.\d", fix))


def _trains(message: str, ratio: float = 0.25) -> bool:
    """Whether the message suggests lengths, none fractional, and training accepts each one."""
    from longlora_kit.config import check_group_size

    lengths, fractional = _suggested(message)
    return bool(lengths) and not fractional and all(call(check_group_size, n, ratio).startswith("ok") for n in lengths)


def _has_even_group(message: str) -> bool:
    """Whether every suggested length admits some even group size (what ``check_shapes`` asks for)."""
    from longlora_kit.s2attn import check_shapes

    lengths, fractional = _suggested(message)
    return bool(lengths) and not fractional and all(call(check_shapes, n, 2, 2, 2).startswith("ok") for n in lengths)


def r11_r12_r13() -> None:
    from longlora_kit.s2attn import check_shapes, group_size_for

    shapes = call(check_shapes, 1, 1, 2, 2)
    ratio = call(group_size_for, 1)
    no_g0 = not any(re.search(r"G=0(?![.\d])", m.rsplit("use ", 1)[-1]) for m in (shapes, ratio))
    ok = shapes.startswith("ValueError") and ratio.startswith("ValueError") and no_g0
    ok = ok and _has_even_group(shapes) and _trains(ratio)
    record("R11", "wrong fix suggestion for L=1 ('use G=0 or G=2')", f"check_shapes(1, G=1): {shapes}; "
           f"group_size_for(1): {ratio}", ok)
    g = call(check_shapes, 18, 4.5, 2, 2)
    r = call(group_size_for, 18, 0.25)
    ok = g.startswith("ValueError") and "13.5" not in g and _trains(r)
    record("R12", "wrong fix suggestion for G=4.5 ('use L=13.5')", f"check_shapes(18, G=4.5): {g}; "
           f"group_size_for(18, 0.25): {r} (suggested lengths train: {_trains(r)})", ok)
    o = cli("memory", "--context", "8191")
    lengths, trains = _suggested(o.err)[0], _trains(o.err)
    record("R13", "memory --context 8191 suggests 8188, which training rejects",
           f"{o}; suggested {lengths}, all accepted by training: {trains}", o.rc != 0 and not o.traceback and trains)


def r14() -> None:
    outs = {v: cli("memory", "--gpu-gib", v) for v in ("nan", "inf")}
    record("R14", "memory --gpu-gib nan exits 0 with '0 tokens'; inf reports the search cap",
           "; ".join(f"{k}: {o}" for k, o in outs.items()), all(clear(o, "gpu_gib") for o in outs.values()))


def r15() -> None:
    import torch

    from longlora_kit import s2attn
    from longlora_kit.families import build, tiny_config

    model = s2attn.enable(build(tiny_config("llama")), "s2_attn").train()
    got = {n: call(model.generate, torch.randint(3, model.config.vocab_size, (1, n)), max_new_tokens=2,
                   do_sample=False) for n in (10, 8)}  # 10: no whole G; 8: G fits, then the KV cache refuses
    record("R15", "generate() in train mode fails on a group-size error with no hint to switch to eval",
           "; ".join(f"prompt of {n}: {v}" for n, v in got.items()),
           all(v.startswith("ValueError") and "model.eval()" in v for v in got.values()))


def r17(base_run: Path, ext_run: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    want = 0o444 & ~umask  # what the umask lets others read
    closed = [str(p.relative_to(p.parents[len(p.relative_to(run).parts)]))
              for run in (base_run, ext_run) for p in [run, *run.rglob("*")]
              if (p.stat().st_mode & want) != want]
    record("R17", "run folders created mode 0700 (unreadable to other users)",
           f"umask {umask:03o}; paths not readable as the umask allows: {closed[:6] or 'none'}"
           + (f" (+{len(closed) - 6})" if len(closed) > 6 else ""), not closed)


# --------------------------------------------------------------------------------------------------


def table() -> str:
    lines = ["| # | case | what happened | verdict |", "|---|---|---|---|"]
    cut = lambda text: text if len(text) <= 700 else text[:700] + " ..."  # noqa: E731
    lines += [f"| {i} | {case} | {cut(what)} | **{verdict}** |" for i, case, what, verdict in RESULTS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    global WORK
    work = WORK = Path(tempfile.mkdtemp(prefix="fault-probes-"))
    os.chmod(work, 0o755)
    old_cwd = os.getcwd()
    os.chdir(work)  # the CLI's default paths (runs/...) land in the temporary folder too
    try:
        base, ext = work / "base", work / "ext"
        made = cli("pretrain", *SMOKE, "--out", str(base))
        assert made.rc == 0, made.err
        made = cli("extend", *SMOKE, "--base", str(base / "model"), "--out", str(ext))
        assert made.rc == 0, made.err
        steps = [d1_and_d3, d2, lambda w: d4(w, base), d5, lambda w: d6(w, base), lambda w: d7(w, base, ext),
                 lambda w: d8(), lambda w: d9(), lambda w: r1(w, base), lambda w: r2(w, base), r3, r4_r16,
                 lambda w: r5(w, ext), lambda w: r6(w, base), lambda w: r7(), r8_r9_r10, lambda w: r11_r12_r13(),
                 lambda w: r14(), lambda w: r15(), lambda w: r17(base, ext)]
        for step in steps:
            try:
                step(work)
            except Exception:  # noqa: BLE001 (a probe that breaks is itself a finding)
                record("?", f"probe {getattr(step, '__name__', step)} crashed", traceback.format_exc()[-300:], False)
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.sort(key=lambda r: (r[0][0] != "D", int("".join(c for c in r[0][1:] if c.isdigit()) or 0), r[0]))
    head = (f"Issue 15 fault probes, {datetime.date.today()}, {os.cpu_count()}-CPU machine, "
            f"{time.perf_counter() - start:.0f} s\n\n")
    text = head + table() + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if all(r[3] != NOT_FIXED for r in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
