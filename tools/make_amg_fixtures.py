"""Reference values for tests/amg_utils.test.ts, from the official utils/amg.py and PyTorch.

    ETAM_REF=/tmp/etam /usr/bin/python3 tools/make_amg_fixtures.py tests/fixtures/amg_reference.json

ETAM_REF is a folder holding the official `efficient_track_anything` package (the fetch tool's
snapshot of github:yformer/EfficientTAM, `git archive HEAD efficient_track_anything`); only its
utils/amg.py is loaded (it needs numpy and torch). Debian's python3-torch (1.13) and
python3-torchvision (0.14) on CPU, as the goldens were made.
"""
import importlib.util, json, os, random, sys

import numpy as np
import torch
from torchvision.ops import batched_nms

spec = importlib.util.spec_from_file_location("amg_utils", os.path.join(os.environ["ETAM_REF"], "efficient_track_anything/utils/amg.py"))
amg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(amg)

out = {}
out["grids"] = {str(n): amg.build_point_grid(n).tolist() for n in [1, 3, 7]}
out["layer_grids"] = [g.shape[0] for g in amg.build_all_layer_point_grids(32, 3, 2)]
out["crop_boxes"] = {}
for h, w, n, r in [(540, 960, 2, 512 / 1500), (1440, 1920, 1, 512 / 1500), (97, 131, 3, 0.3)]:
    boxes, layers = amg.generate_crop_boxes((h, w), n, r)
    out["crop_boxes"][f"{h}x{w}x{n}x{r}"] = {"boxes": boxes, "layers": layers}
rng = np.random.default_rng(0)
m = rng.random((3, 5, 7)) > 0.5
m[1] = True
m[2] = False
out["rle"] = {"masks": m.astype(int).tolist(), "rles": amg.mask_to_rle_pytorch(torch.from_numpy(m))}
boxes = torch.tensor([[0, 0, 10, 10], [5, 30, 200, 100], [0, 0, 0, 0], [100, 100, 150, 139]])
out["near_edge"] = {"boxes": boxes.tolist(), "crop": [100, 50, 300, 160], "orig": [0, 0, 300, 400],
                    "result": amg.is_box_near_crop_edge(boxes, [100, 50, 300, 160], [0, 0, 300, 400]).tolist()}

# PyTorch's CPU sort (unstable for descending=True) and torchvision's batched_nms, with many ties
random.seed(7)
pick = lambda: random.choice([0.25, 0.5, 0.75, random.randint(0, 1023) / 1024])
out["torch_sort"] = []
for n in [17, 100, 1001]:
    v = [pick() for _ in range(n)]
    out["torch_sort"].append({"values": v, "order": torch.tensor(v).sort(descending=True)[1].tolist()})
out["torchvision_batched_nms"] = []
for n, thr in [(60, 0.95), (1200, 0.7)]:
    bx = []
    for _ in range(n):
        x0, y0 = random.randint(0, 60), random.randint(0, 60)
        bx.append([x0, y0, x0 + random.randint(0, 30), y0 + random.randint(0, 30)])
    bx[0], bx[1] = [0, 0, 10, 20], [0, 0, 10, 19]  # IoU exactly 19/20
    sc = [pick() for _ in range(n)]
    sc[0], sc[1] = 1.0, 0.875
    keep = batched_nms(torch.tensor(bx, dtype=torch.float32), torch.tensor(sc), torch.zeros(n), thr).tolist()
    out["torchvision_batched_nms"].append({"boxes": [c for b in bx for c in b], "scores": sc, "threshold": thr, "keep": keep})
out["_made_by"] = "tools/make_amg_fixtures.py: the official utils/amg.py, torch 1.13 / torchvision 0.14 on CPU (Debian)"
with open(sys.argv[1], "w") as f:
    json.dump(out, f, separators=(",", ":"))
