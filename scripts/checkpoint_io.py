"""What the checkpoint converters (convert_lavin_checkpoint.py, convert_mole_checkpoint.py) share:
the error they report, reading a released torch checkpoint without running its code, and writing
a directory atomically (an mmtune adapter directory: adapter_model.safetensors + adapter_config.json)."""
import contextlib
import os
import pickle
import re
import shutil
import sys

import torch
from safetensors.torch import save_file


class ConvertError(Exception):
    pass


def capped(names, n=5):
    names = sorted(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def load_released(path, expected, holds, safe_globals=()):
    """Unpickles `path` with torch's weights_only loader (plus `safe_globals`); any failure is a
    ConvertError naming the file. `expected` names the file kind ("LaVIN's checkpoint-N.pth file"),
    `holds` what a real one references ("neither a tensor nor a plain container")."""
    if os.path.isdir(path):
        raise ConvertError(f"{path}: is a directory (expected {expected})")
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: not found")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m:
            raise ConvertError(f"{path}: refused to unpickle: it references {m.group(1)}, which is {holds}")
        # torch's message wraps the cause in advice paragraphs: keep the cause
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
        cause = [ln for ln in lines if not ln.startswith(("Please file", "Check the documentation"))]
        raise ConvertError(f"{path}: not a torch checkpoint (unpickling failed: {(cause or ['?'])[0][:200]})")
    except Exception as e:  # anything a corrupt file makes the (code-free) unpickler raise
        first = (str(e).splitlines() or [""])[0].split(". ")[0][:200] or "empty or truncated file"
        raise ConvertError(f"{path}: not a torch checkpoint ({type(e).__name__}: {first})")


@contextlib.contextmanager
def atomic_dir(out, force):
    """Yields a temp sibling of `out` to write into; when the block ends without an error it
    replaces `out` (which must not exist unless `force`), otherwise it is removed."""
    if os.path.exists(out) and not force:
        raise ConvertError(f"{out}: already exists (pass --force to replace it)")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        yield tmp
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(f"{out}: cannot write ({e})")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_adapter_files(d, tensors, config, family):
    """An mmtune adapter's two files (adapter_model.safetensors + adapter_config.json) in the
    existing directory `d`."""
    import json

    save_file(tensors, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt", "mmtune.family": family})
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2) + "\n")


def write_adapter_dir(out, tensors, config, family, force):
    """Writes the adapter directory into a temp sibling, then renames it to `out`."""
    with atomic_dir(out, force) as tmp:
        write_adapter_files(tmp, tensors, config, family)


def run(convert, flags):
    """The converters' exit status: convert(flags), a ConvertError printed as one line -> 1."""
    try:
        convert(flags)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
