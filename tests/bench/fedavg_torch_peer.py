#!/usr/bin/python3
"""fedavg_torch_peer.py — the peer for tests/bench/fed_fmnist.sh: FedAvg on the same partition,
simulated in one PyTorch process (what a Flower simulation runs per client), with the same
model (reference mlp), local training (SGD lr, momentum 0.9, batch B, E epochs, a fresh
optimizer per round), sampling (K of the clients per round) and sample-weighted averaging.

  fedavg_torch_peer.py PARTITION_DIR ROUNDS PER_ROUND LR BATCH EPOCHS SEED
Reads each client's sample indices from the file names in PARTITION_DIR/client-*/<class>/
(updraft dataset partition names each PNG by its position in the source) and the pixels from
the IDX file, so both sides train on exactly the same client data. Prints one line per round
("round R test_acc A seconds S") and a RESULT line.
"""
import os
import sys

for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
import copy
import glob
import gzip
import json
import random
import time

import numpy as np
import torch
import torch.nn as nn

D = "/usr/share/datasets/fashion-mnist/"


def idx(name):
    b = gzip.open(D + name).read()
    if b[2] == 8 and b[3] == 3:
        n, r, c = np.frombuffer(b[4:16], ">u4")
        return np.frombuffer(b[16:], np.uint8).reshape(n, r * c)
    return np.frombuffer(b[8:], np.uint8)


def main():
    part, rounds, per, lr, batch, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    src = json.load(open(os.path.join(part, "partition.json")))["source"]
    name = os.path.basename(src)
    xall = torch.tensor(idx(name), dtype=torch.float32) / 255.0
    yall = torch.tensor(idx(name.replace("images-idx3", "labels-idx1")).astype(np.int64))
    xte = torch.tensor(idx("t10k-images-idx3-ubyte.gz"), dtype=torch.float32) / 255.0
    yte = torch.tensor(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    clients = []
    for d in sorted(glob.glob(os.path.join(part, "client-*"))):
        ids = [int(os.path.basename(f)[:-4]) for f in glob.glob(os.path.join(d, "*", "*.png"))]
        clients.append(torch.tensor(sorted(ids)))
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    lossf = nn.CrossEntropyLoss()
    rng = random.Random(seed)
    t0 = time.time()
    acc = 0.0
    for r in range(1, rounds + 1):
        chosen = rng.sample(range(len(clients)), min(per, len(clients)))
        total = sum(len(clients[c]) for c in chosen)
        agg = [torch.zeros_like(p) for p in model.parameters()]
        for c in chosen:
            local = copy.deepcopy(model)
            opt = torch.optim.SGD(local.parameters(), lr=lr, momentum=0.9)
            ids = clients[c]
            for _ in range(epochs):
                perm = ids[torch.randperm(len(ids))]
                for i in range(0, len(perm), batch):
                    b = perm[i:i + batch]
                    opt.zero_grad()
                    lossf(local(xall[b]), yall[b]).backward()
                    opt.step()
            w = len(ids) / total
            for a, p in zip(agg, local.parameters()):
                a += w * p.detach()
        with torch.no_grad():
            for p, a in zip(model.parameters(), agg):
                p.copy_(a)
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print("round %d test_acc %.4f seconds %.1f" % (r, acc, time.time() - t0), flush=True)
    print("RESULT fedavg_torch rounds=%d per_round=%d clients=%d test_acc=%.4f seconds=%.1f"
          % (rounds, per, len(clients), acc, time.time() - t0))


if __name__ == "__main__":
    main()
