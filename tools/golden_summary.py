#!/usr/bin/env python3
"""Summarises tools/golden.ts --json outputs per tensor kind: worst error relative to max|ref| and to
the case's bound, masks' worst differing pixels. Usage: python3 tools/golden_summary.py A.json [B.json ...]"""
import json, re, sys

def kind(name):
    n = re.sub(r'\.frame\d+', '.frameF', name)
    n = re.sub(r'\.obj\d+', '.objK', n)
    n = re.sub(r'\.pass\d+', '.passP', n)
    n = re.sub(r'\.click\d+', '.clickC', n)
    n = re.sub(r'^prompt\.[a-z_]+\.', 'prompt.*.', n)
    return n

for f in sys.argv[1:]:
    d = json.load(open(f))
    print(f"== {d['case']} precision {d['precision']} keepF32 {d.get('keepF32')} f16Attention {d.get('f16Attention')} kernels {d['kernels']}")
    groups = {}
    for r in d['rows']:
        g = groups.setdefault(kind(r['name']), {'n': 0, 'fail': 0, 'rel': 0.0, 'ratio': 0.0, 'px': 0, 'pxfrac': 0.0, 'kind': r['kind']})
        g['n'] += 1
        g['fail'] += 0 if r['pass'] else 1
        if r['kind'] == 'float':
            g['rel'] = max(g['rel'], r['maxAbsErr'] / max(r['maxAbsRef'], 1e-30))
            g['ratio'] = max(g['ratio'], r['maxAbsErr'] / r['bound'])
        else:
            g['px'] = max(g['px'], r.get('differing', 0))
            g['pxfrac'] = max(g['pxfrac'], r.get('differing', 0) / max(r.get('total', 1), 1))
    for k, g in groups.items():
        if g['kind'] == 'float':
            print(f"  {k:50s} {g['n']:4d} rows {g['fail']:4d} over bound  max err/max|ref| {g['rel']:.2e}  err/bound {g['ratio']:.2f}")
        else:
            print(f"  {k:50s} {g['n']:4d} rows {g['fail']:4d} fail        worst {g['px']} px ({100*g['pxfrac']:.3f}%)")
