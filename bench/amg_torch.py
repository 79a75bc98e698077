"""The official automatic mask generator timed on the CPU, for bench/amg.ts's ratio.

    ETAM_REF=/tmp/etam /usr/bin/python3 bench/amg_torch.py CASE_DIR IMAGE SETTINGS_JSON

CASE_DIR holds config.json and weights.safetensors (a golden case folder); the model is built from
the config with the official classes (as ../shared/tools/golden/make_golden.py does, whose import
shims are reused) and given those weights (f16 ones widened to f32, as the goldens ran).
SETTINGS_JSON: the generator's keyword arguments (snake_case). Prints one JSON line: seconds of
set_image alone, of generate (median of the runs), the number of masks, torch's version and threads.
"""
import json, os, statistics, struct, sys, time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../shared/tools/golden"))
import make_golden  # noqa: E402  (the official package from ETAM_REF, with the shims for Debian's torch)
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    kinds = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "I32": np.int32}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        a = np.frombuffer(raw[8 + n + s:8 + n + e], dtype=kinds[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(a.astype(np.float32) if a.dtype == np.float16 else a.copy())
    return out


def main():
    case, image_path, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    runs = int(os.environ.get("RUNS", "1"))
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", os.cpu_count() or 1)))  # Debian's default here is 1
    with open(os.path.join(case, "config.json")) as f:
        cfg = json.load(f)
    model = make_golden.instantiate(cfg).eval()
    missing, unexpected = model.load_state_dict(read_safetensors(os.path.join(case, "weights.safetensors")), strict=False)
    if unexpected or [k for k in missing if "rope" not in k and "freqs" not in k]:
        raise SystemExit(f"weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    from efficient_track_anything.automatic_mask_generator import EfficientTAMAutomaticMaskGenerator
    S = model.image_size
    g = S // 16
    rgb = np.array(Image.open(image_path).convert("RGB"))
    gen = EfficientTAMAutomaticMaskGenerator(model, output_mode="binary_mask", **settings)
    gen.predictor._bb_feat_sizes = [(4 * g, 4 * g), (2 * g, 2 * g), (g, g)]
    with torch.inference_mode():
        t = time.perf_counter()
        gen.predictor.set_image(rgb)
        set_image = time.perf_counter() - t
        gen.predictor.reset_predictor()
        times, n = [], 0
        for _ in range(runs):
            t = time.perf_counter()
            n = len(gen.generate(rgb))
            times.append(time.perf_counter() - t)
    print(json.dumps({"set_image_s": set_image, "generate_s": statistics.median(times), "masks": n,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
