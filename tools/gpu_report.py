#!/usr/bin/env python3
"""gpu_report.py - compiles every program clmha builds with the GPU vendors' own compilers and
reports each kernel's registers, scratch (spills, stack frame, private memory) and occupancy.

The programs and their exact build options come from clmha-programs (one line per program a
layer builds under each tuning row). Each is compiled, without a GPU, by:
  intel   IGC through ocloc (Debian intel-opencl-icd): its shader dumps give the SIMD width it
          settled on, spill size and private memory size; registers are the GRFs allocated.
  amd     clang-15 to amdgcn-amd-amdhsa with libclc, llc-15's kernel-resource-usage remarks:
          VGPRs, scratch bytes a lane, waves a SIMD.
  nvidia  clang-15 to nvptx64-nvidia-nvcl with libclc, then ptxas -v (the CUDA toolkit; its
          targets are skipped, with a line saying so, where ptxas is absent).
Writes one JSON object a kernel and target (--json), a markdown table (--markdown), and exits
non-zero on a compile error on any target or on scratch in a kernel a GPU tuning row chooses,
or where a GPU-chosen kernel misses its register or occupancy target (TARGETS below).
Standard library only.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBCLC = "/usr/lib/clc"
TARGETS_BY_VENDOR = {
    "intel": ["skl", "tgllp", "dg2"],
    "amd": ["gfx906", "gfx1030", "gfx1100"],
    "nvidia": ["sm_75", "sm_80", "sm_90"],
}
# Targets of the kernels GPUs take (issue: decode split at >= 8 waves/SIMD on gfx1030 and <= 64
# registers on sm_80; prefill tile <= 128 registers on sm_80 and >= 4 waves on gfx1030).
TARGETS = {
    ("attention_split_gpu", "gfx1030"): ("occupancy", ">=", 8),
    ("attention_split_gpu", "sm_80"): ("registers", "<=", 64),
    ("attention_qtile_gpu", "gfx1030"): ("occupancy", ">=", 4),
    ("attention_qtile_gpu", "sm_80"): ("registers", "<=", 128),
}
# The tuning row (src/tuning.c) a vendor's GPUs take.
VENDOR_ROWS = {"intel": "intel_gpu", "amd": "amd_gpu", "nvidia": "nvidia"}
ROLES = {
    "attention_split": "decode", "attention_split_gpu": "decode", "attention_heads": "decode",
    "attention_tile": "prefill", "attention_qtile_gpu": "prefill",
    "attention_rows": "probabilities", "attention_merge": "merge", "gemm_tail": "merge",
    "gemm_acc": "projection", "gemm_bias4": "projection", "gemm_qkv4": "projection",
    "pack_columns": "projection", "split_qkv": "projection", "fill_bias": "projection",
    "commit": "splice", "to_half": "splice", "to_int8": "splice",
    "quantize_rows": "projection", "gemm_i8": "projection", "gemm_q4": "projection",
    "gemm_i8w": "projection", "gemm_q4w": "projection",
    "to16": "projection", "round_rows": "projection", "gemm_w16": "projection",
    "gemm_w16w": "projection",
}


def run(cmd, cwd=None, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def expand(name, depth=0):
    """A kernel file's source with its `#include "x.clh"` lines replaced by those headers, as
    the library does (src/program.c), so each vendor compiler sees one self-contained text."""
    if depth > 4:
        raise RuntimeError("%s: headers nested more than 4 deep" % name)
    out = []
    with open(os.path.join(ROOT, "kernels", name)) as f:
        for line in f:
            if line.startswith('#include "'):
                out.append(expand(line.split('"')[1], depth + 1))
            else:
                out.append(line)
    return "".join(out)


def source_of(prog, work):
    """The source of a program (a kernel file, headers included), written to work/src.cl."""
    path = os.path.join(work, "src.cl")
    with open(path, "w") as out:
        out.write(expand(prog))
    return path


def compile_llvm(src, options, vendor, target, work):
    """clang-15 + libclc + llc-15 (+ ptxas): {kernel: (registers, scratch, occupancy)}."""
    if vendor == "amd":
        triple, lib, extra = "amdgcn-amd-amdhsa", "amdgcn--amdhsa.bc", ["-mcpu=" + target]
    else:
        triple, lib, extra = "nvptx64-nvidia-nvcl", "nvptx64--nvidiacl.bc", []
    bc, linked, opt = (os.path.join(work, n) for n in ("a.bc", "l.bc", "o.bc"))
    cmd = ["clang-15", "-x", "cl", "-cl-std=CL1.2", "-target", triple, "-nogpulib",
           "-Xclang", "-finclude-default-header", "-emit-llvm", "-c", "-O2", *extra,
           *options.split(), src, "-o", bc]
    for c in (cmd, ["llvm-link-15", bc, os.path.join(LIBCLC, lib), "--only-needed", "-o", linked],
              ["opt-15", "-O3", linked, "-o", opt]):
        rc, out = run(c)
        if rc != 0:
            return None, out
    if vendor == "amd":
        rc, out = run(["llc-15", "-O3", "-mtriple=" + triple, "-mcpu=" + target,
                       "-pass-remarks-analysis=kernel-resource-usage", opt, "-o",
                       os.path.join(work, "out.s")])
        if rc != 0:
            return None, out
        res, name, cur = {}, None, {}
        for line in out.splitlines():
            m = re.search(r"remark: .*?(Function Name|VGPRs|ScratchSize \[bytes/lane\]|"
                          r"Occupancy \[waves/SIMD\]|VGPRs Spill|SGPRs Spill): (\S+)", line)
            if not m:
                continue
            key, val = m.group(1), m.group(2)
            if key == "Function Name":
                name, cur = val, {}
                res[name] = cur
            else:
                cur[key] = int(val)
        kernels = set(re.findall(r"^\s*\.amdhsa_kernel (\S+)", open(os.path.join(work, "out.s")).read(),
                                 re.M))
        return {k: (v.get("VGPRs"), v.get("ScratchSize [bytes/lane]", 0),
                    v.get("Occupancy [waves/SIMD]")) for k, v in res.items() if k in kernels}, out
    ptx = os.path.join(work, "o.ptx")
    # LLVM 15 knows PTX 7.5 and sm_80 at most: sm_90 gets sm_80's PTX under PTX 7.8's header,
    # which ptxas then compiles for sm_90 as a driver's JIT would.
    cpu = target if target in ("sm_75", "sm_80") else "sm_80"
    rc, out = run(["llc-15", "-O3", "-mtriple=" + triple, "-mcpu=" + cpu, "-mattr=+ptx75", opt,
                   "-o", ptx])
    if rc != 0:
        return None, out
    if cpu != target:
        text = open(ptx).read()
        text = re.sub(r"^\.version \S+", ".version 7.8", text, count=1, flags=re.M)
        text = re.sub(r"^(\.target )sm_\d+", r"\g<1>" + target, text, count=1, flags=re.M)
        open(ptx, "w").write(text)
    rc, out = run(["ptxas", "-arch=" + target, "-v", ptx, "-o", os.path.join(work, "o.cubin")])
    if rc != 0:
        return None, out
    res, name = {}, None
    for line in out.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            name = m.group(1)
            res[name] = [None, 0, None]
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", line)
        if m and name:
            res[name][1] = int(m.group(1)) + int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m and name:
            res[name][0] = int(m.group(1))
    return {k: tuple(v) for k, v in res.items()}, out


def compile_intel(src, options, target, work):
    """ocloc with IGC's shader dumps: {kernel: (grfs, spill + private bytes, None, simd)}."""
    dump = os.path.join(work, "dump")
    os.makedirs(dump, exist_ok=True)
    env = dict(os.environ, IGC_ShaderDumpEnable="1", IGC_DumpToCustomDir=dump)
    rc, out = run(["ocloc", "compile", "-file", src, "-device", target, "-options",
                   "-cl-std=CL1.2 " + options, "-out_dir", os.path.join(work, "bin"), "-q"],
                  env=env)
    if rc != 0:
        return None, out
    # One .asm a kernel and SIMD width tried; a retry ("_1_simd..") replaces the first trial, and
    # IGC keeps the widest width of the last trial it dumped.
    best = {}
    for path in glob.glob(os.path.join(dump, "*simd*.asm")):
        m = re.search(r"_(?:(\d+)_)?simd(\d+)_entry_\d+\.asm$", path)
        if not m:
            continue
        trial, simd = int(m.group(1) or 0), int(m.group(2))
        text = open(path, errors="replace").read()
        km = re.search(r"^//\.kernel (\S+)", text, re.M)
        if not km:
            continue
        spill = re.search(r"^//\.spill size (\d+)", text, re.M)
        priv = re.search(r"^//\.private memory size (\d+)", text, re.M)
        # The kernel's own variables (V...), not the runtime's reserved registers at the top.
        grfs = [int(g) for g in
                re.findall(r"^//\.declare V\d+ .*\(r(\d+)\.\d+\)\s*$", text, re.M)]
        rec = ((trial, simd), (max(grfs) + 1 if grfs else None,
                               (int(spill.group(1)) if spill else 0) +
                               (int(priv.group(1)) if priv else 0), None, simd))
        if km.group(1) not in best or rec[0] > best[km.group(1)][0]:
            best[km.group(1)] = rec
    return {k: v[1] for k, v in best.items()}, out


def job(prog, options, vendor, target):
    work = tempfile.mkdtemp(prefix="clmha-gpu-")
    try:
        src = source_of(prog, work)
        if vendor == "intel":
            return compile_intel(src, options, target, work)
        return compile_llvm(src, options, vendor, target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(rows, skipped):
    out = ["<!-- Generated by tools/gpu-report.sh --markdown docs/gpu-report.md: do not edit. -->",
           "# GPU report", "",
           "Every program clmha builds, with the exact build options the library passes for each "
           "tuning row (layers of 12 heads with head dims 64, 80 and 128, float32 and float16 "
           "caches), compiled by the GPU vendors' own compilers on a machine without a GPU: "
           "Intel's IGC (ocloc), AMD's LLVM back end (clang-15, libclc, llc-15) and NVIDIA's "
           "ptxas. `tools/gpu-report.sh` makes this page; CI runs it and fails on a compile "
           "error, on any scratch, stack or spill in a kernel that a GPU tuning row can choose, "
           "and on a missed target below.", "",
           "- **registers**: VGPRs a lane (AMD), registers a thread (NVIDIA), GRFs a hardware "
           "thread (Intel, at the SIMD width it settled on; SIMD8/16: some builds one width, "
           "some the other).",
           "- **scratch**: bytes a work-item of scratch, stack frame, spills and private memory.",
           "- **occupancy**: waves a SIMD as the AMD compiler computes it (registers and local "
           "memory); the others do not say.", "",
           "Targets, checked by CI: " + "; ".join(
               "`%s` on %s: %s %s %d" % (k, t, f, op, v) for (k, t), (f, op, v) in TARGETS.items())
           + ".", ""]
    if skipped:
        out += ["Not compiled here: " + "; ".join(skipped) + ".", ""]
    out += ["The CPU rows' (`cpu`, `cpu_narrow`) own builds (no GPU takes them) are compiled "
            "for the head dim 64, float32 layer only.", ""]
    out += ["## Kernels a GPU tuning row chooses", "",
            "Worst case over the layers and builds of each kernel (most registers, most scratch, "
            "least occupancy) that the vendor's own tuning row (`intel_gpu`, `amd_gpu`, "
            "`nvidia`) makes; CI checks every GPU row's builds on every target.", ""]
    targets = [t for v in TARGETS_BY_VENDOR for t in TARGETS_BY_VENDOR[v]
               if any(r["target"] == t for r in rows)]
    for chosen in (True, False):
        if not chosen:
            out += ["", "## Other kernels (CPU tuning row only; scratch allowed)", ""]
        kernels = sorted({(r["role"], r["kernel"]) for r in rows if r["gpu_chosen"] == chosen})
        out.append("| kernel | role | " + " | ".join(targets) + " |")
        out.append("| --- | --- | " + " | ".join("---" for _ in targets) + " |")
        for role, k in kernels:
            cells = []
            for t in targets:
                rs = [r for r in rows if r["kernel"] == k and r["target"] == t and
                      r["gpu_chosen"] == chosen]
                # A vendor's column shows the builds of the row its devices take, where any.
                own = [r for r in rs if VENDOR_ROWS[r["vendor"]] in r["rows"]]
                rs = own if chosen and own else rs
                if not rs:
                    cells.append("")
                    continue
                regs = max((r["registers"] or 0) for r in rs)
                scratch = max(r["scratch_bytes"] for r in rs)
                occ = [r["occupancy"] for r in rs if r["occupancy"] is not None]
                cell = "%d reg" % regs
                if scratch:
                    cell += ", **%d B scratch**" % scratch
                if occ:
                    cell += ", %d waves" % min(occ)
                simd = sorted({r.get("simd") for r in rs if r.get("simd")})
                if simd:
                    cell += ", SIMD" + "/".join(str(w) for w in simd)
                cells.append(cell)
            out.append("| `%s` | %s | %s |" % (k, role, " | ".join(cells)))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--programs", help="clmha-programs' output")
    ap.add_argument("--from-json", help="make --markdown from a --json file, compiling nothing")
    ap.add_argument("--json", help="write one JSON object a kernel and target here")
    ap.add_argument("--markdown", help="write the markdown report here")
    ap.add_argument("--vendors", default="intel,amd,nvidia")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    if args.from_json:
        rows = [json.loads(line) for line in open(args.from_json)]
        with open(args.markdown, "w") as f:
            f.write(markdown(rows, []))
        return 0
    if not args.programs:
        ap.error("--programs or --from-json is needed")
    builds = {}  # (program, options) -> set of rows
    for line in open(args.programs):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        row, dk, dtype, prog, options = parts
        # The CPU row's builds are compiled for one layer only (head dim 64, float32 cache):
        # no GPU takes them, and their unrolled CPU kernels take IGC a minute each.
        if row.startswith("cpu") and (dk != "64" or dtype != "float32"):
            continue
        builds.setdefault((prog, options), set()).add(row)

    vendors = [v for v in args.vendors.split(",") if v]
    skipped = []
    tools = {"intel": ["ocloc"], "amd": ["clang-15", "llc-15", "llvm-link-15", "opt-15"],
             "nvidia": ["clang-15", "llc-15", "ptxas"]}
    if shutil.which("ptxas") is None and os.path.exists("/usr/local/cuda/bin/ptxas"):
        os.environ["PATH"] += os.pathsep + "/usr/local/cuda/bin"
    for v in list(vendors):
        missing = [t for t in tools[v] if shutil.which(t) is None]
        if missing:
            skipped.append("%s (%s not found)" % (v, ", ".join(missing)))
            print("gpu-report: skipping %s: %s not found" % (v, ", ".join(missing)))
            vendors.remove(v)

    jobs = [(prog, opts, v, t) for (prog, opts) in sorted(builds) for v in vendors
            for t in TARGETS_BY_VENDOR[v]]
    print("gpu-report: %d programs x %d targets = %d compiles" %
          (len(builds), sum(len(TARGETS_BY_VENDOR[v]) for v in vendors), len(jobs)))
    rows, failures = [], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        futs = {ex.submit(job, *j): j for j in jobs}
        for fut in concurrent.futures.as_completed(futs):
            prog, opts, vendor, target = futs[fut]
            res, log = fut.result()
            if res is None or not res:
                failures.append("%s [%s] on %s %s: %s" % (prog, opts, vendor, target,
                                                         log.strip()[-2000:] or "no kernels"))
                continue
            gpu_rows = sorted(r for r in builds[(prog, opts)] if not r.startswith("cpu"))
            for kernel, vals in sorted(res.items()):
                rows.append({
                    "vendor": vendor, "target": target, "kernel": kernel,
                    "file": "kernels/" + prog,
                    "options": opts, "rows": sorted(builds[(prog, opts)]),
                    "gpu_chosen": bool(gpu_rows), "role": ROLES.get(kernel, "other"),
                    "registers": vals[0], "scratch_bytes": vals[1], "occupancy": vals[2],
                    **({"simd": vals[3]} if len(vals) > 3 else {}),
                })
    rows.sort(key=lambda r: (r["kernel"], r["vendor"], r["target"], r["file"], r["options"]))
    problems = list(failures)
    for r in rows:
        if r["gpu_chosen"] and r["scratch_bytes"]:
            problems.append("%s on %s [%s]: %d bytes of scratch/stack/spill" %
                            (r["kernel"], r["target"], r["options"], r["scratch_bytes"]))
        goal = TARGETS.get((r["kernel"], r["target"]))
        if goal and r["gpu_chosen"]:
            field, op, bound = goal
            val = r[field]
            if val is None or (val < bound if op == ">=" else val > bound):
                problems.append("%s on %s [%s]: %s %s, target %s %d" %
                                (r["kernel"], r["target"], r["options"], field, val, op, bound))
    if args.json:
        with open(args.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r, sort_keys=True) + "\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(rows, skipped))
    chosen = [r for r in rows if r["gpu_chosen"]]
    print("gpu-report: %d kernel builds compiled (%d a GPU row chooses), %d problems" %
          (len(rows), len(chosen), len(problems)))
    for p in problems:
        print("gpu-report: FAIL " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
