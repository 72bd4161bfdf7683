/*
 * attention_gpu.cl - attention for GPUs (helpers in attention_common.clh): work-groups of WGS
 * work-items in which the head dimension is spread over several work-items ("lanes"), so that a
 * work-item holds a few registers of a query and an output instead of whole rows, consecutive
 * work-items read consecutive addresses of the cache, and no per-work-item array is indexed at
 * run time. OpenCL 1.2 has no sub-groups: lanes combine their partial sums through local memory
 * between work-group barriers. No probabilities, no dropout (attention_rows.cl has those).
 *
 * attention_split_gpu (decode, and any rows): one query row a work-group, over one chunk of its
 *   keys. WGS / LK groups of LK lanes take a step of WGS keys together, each group LK of them;
 *   a lane holds 1 / LK of the query and of the output.
 * attention_qtile_gpu (prefill): QR = WGS / LQ consecutive query rows of one (batch, head) a
 *   work-group, LQ lanes a row, over one chunk of the keys; key and value tiles of KT rows are
 *   staged in local memory once for all QR rows.
 *
 * Both follow attention_split's contract: work-group g takes chunk c = g % nch of its rows'
 * keys, [c * chunk, (c + 1) * chunk) cut at each row's end; with nch == 1 the rows are finished
 * here (o = acc / l, zeros when every key is masked), else each row's (m, l, acc) go to
 * part[(r * nch + c) * (DV + 2)] for merge.cl. A masked key's rows are never used (they may hold
 * NaN); keys past a row's end are never read. Specialisation: WGS (a power of two), LK and LQ
 * (powers of two dividing WGS), KT (keys a tile), as the host chooses them (src/layer.c).
 */
#include "attention_common.clh"

#ifndef WGS
#define WGS 64
#endif
#ifndef LK
#define LK 16
#endif
#ifndef LQ
#define LQ 4
#endif
#ifndef KT
#define KT 32
#endif

/* Lanes read vectors of VW elements where both head dims allow (float4 or four halves). */
#if DK % 4 == 0 && DV % 4 == 0
#define VW 4
#define VEC float4
#define VLOAD_KV(p) LOAD_KV4(0, (p))
#define VLOAD_F(p) vload4(0, (p))
#define VSTORE_L(x, p) vstore4((x), 0, (p))
#define VDOT(a, b) dot((a), (b))
#else
#define VW 1
#define VEC float
#define VLOAD_KV(p) LOAD_KV(0, (p))
#define VLOAD_F(p) (*(p))
#define VSTORE_L(x, p) (*(p) = (x))
#define VDOT(a, b) ((a) * (b))
#endif

/* ---- Decode: one row a work-group, LK lanes a key ---- */

#define LG (WGS / LK)                         /* groups of lanes: keys in flight at once */
#define NQI ((DK / VW + LK - 1) / LK)         /* query vectors a lane holds */
#define NAI ((DV / VW + LK - 1) / LK)         /* output vectors a lane holds */
#define Q_EXACT ((DK / VW) % LK == 0)         /* every lane holds NQI vectors */
#define A_EXACT ((DV / VW) % LK == 0)         /* every lane holds NAI vectors */
#define PT_FLOATS (LG * LK * (LK + 1))        /* partial dot products, a padded row a key */
#define CB_FLOATS (LG * DV)                   /* the groups' outputs, combined at the end */
#define WS_FLOATS (PT_FLOATS > CB_FLOATS ? PT_FLOATS : CB_FLOATS)
/* About four vectors of keys in flight a lane: more hold registers (all LK keys at once take
 * DK floats a lane) and cost occupancy for little gain. */
#if NQI == 1
#define UNROLL_KEYS _Pragma("unroll 4")
#elif NQI == 2
#define UNROLL_KEYS _Pragma("unroll 2")
#else
#define UNROLL_KEYS _Pragma("unroll 1")
#endif

/*
 * A step: group grp's lanes take keys jg .. jg + LK - 1 (those before j1). Each lane forms its
 * partial dot product with each key (one vector load a key, consecutive lanes on consecutive
 * addresses) and writes it to row u of the group's padded LK x LK block; after a barrier lane u
 * sums row u, the score of key jg + u, and after another every lane reads the LK scores, moves
 * the group's running maximum once and adds the weighted value rows to its share of the output.
 * All lanes of a group hold the same (m, l). At the end the LG groups' (m, l, acc) are combined
 * in local memory, as merge.cl combines chunks.
 */
__kernel __attribute__((reqd_work_group_size(WGS, 1, 1))) void
attention_split_gpu(ATTENTION_ARGS, __global float *part, int nch, int chunk) {
    __local float ws[WS_FLOATS];
    __local float sc[WGS];
    __local int okk[WGS];
    __local float cm[LG], cl[LG];

    const int lid = (int)get_local_id(0);
    const int lane = lid % LK, grp = lid / LK;
    const ulong g = get_group_id(0);
    const ulong r = g / (ulong)nch;
    const int c = (int)(g - r * (ulong)nch);
    const row_info ri = row_setup(r, T, H, S, k_off, k_bstride, v_off, v_bstride, m_off, m_sb, m_sh, m_st,
                                  causal, causal_base, lens, lens_off, has_lens);
    const ulong kfo = ri.b * kn_bstride + (ulong)ri.h * KROW,
                vfo = ri.b * vn_bstride + (ulong)ri.h * VROW;
    const ulong q_row = q_off + ((ri.b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)ri.h) * DK;

    VEC qv[NQI], acc[NAI];
    _Pragma("unroll") for (int i = 0; i < NQI; i++) {
        const int e = (lane + LK * i) * VW;
        qv[i] = (VEC)(0.0f);
        if (Q_EXACT || e < DK) {
            qv[i] = VLOAD_F(q + q_row + e) * scale;
        }
    }
    _Pragma("unroll") for (int i = 0; i < NAI; i++) {
        acc[i] = (VEC)(0.0f);
    }
    float m = NEG_SENTINEL, l = 0.0f;
    const int j0 = c * chunk;
    const int j1 = min(ri.end, j0 + chunk);
    __local float *pg = ws + grp * LK * (LK + 1);
    __local const float *sg = sc + grp * LK;
    __local const int *og = okk + grp * LK;

    for (int jb = j0; jb < j1; jb += WGS) {
        const int jg = jb + grp * LK;
        UNROLL_KEYS for (int u = 0; u < LK; u++) {
            float s = 0.0f;
            if (jg + u < j1) {
                __global const KV_T *kr =
                    key_row(k, ri.k_base, ri.k_step, kn, kfo, new_lo, new_hi, (ulong)(jg + u));
                _Pragma("unroll") for (int i = 0; i < NQI; i++) {
                    const int e = (lane + LK * i) * VW;
                    if (Q_EXACT || e < DK) {
                        s += VDOT(qv[i], VLOAD_KV(kr + e));
                    }
                }
                s *= KEY_SCALE(kr); /* an int8 row's scale */
            }
            pg[u * (LK + 1) + lane] = s;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        float s = 0.0f;
        _Pragma("unroll") for (int u = 0; u < LK; u++) {
            s += pg[lane * (LK + 1) + u];
        }
        const int jl = jg + lane;
        okk[lid] = jl < j1 && (!has_mask || mask[ri.m_base + (ulong)jl * m_ss] != 0);
        sc[lid] = keras_score(s);
        barrier(CLK_LOCAL_MEM_FENCE);
        float bm = NEG_SENTINEL;
        _Pragma("unroll") for (int u = 0; u < LK; u++) {
            bm = og[u] ? fmax(bm, sg[u]) : bm;
        }
        if (bm > m) {
            const float f = exp(m - bm); /* 0 for the first key (m is the sentinel) */
            l *= f;
            _Pragma("unroll") for (int i = 0; i < NAI; i++) {
                acc[i] *= f;
            }
            m = bm;
        }
        for (int u = 0; u < LK; u++) {
            if (og[u]) {
                const float w0 = exp(sg[u] - m);
                l += w0;
                __global const KV_T *vr =
                    key_row(v, ri.v_base, ri.v_step, vn, vfo, new_lo, new_hi, (ulong)(jg + u));
                const float w = w0 * VALUE_SCALE(vr); /* an int8 row's scale */
                _Pragma("unroll") for (int i = 0; i < NAI; i++) {
                    const int e = (lane + LK * i) * VW;
                    if (A_EXACT || e < DV) {
                        acc[i] = fma((VEC)(w), VLOAD_KV(vr + e), acc[i]);
                    }
                }
            }
        }
    }

    /* Combine the groups: each rescaled to the largest maximum of a group that attended
     * somewhere (l != 0, NaN included, so that a NaN score reaches the output). */
    barrier(CLK_LOCAL_MEM_FENCE); /* ws is reused */
    if (lane == 0) {
        cm[grp] = m;
        cl[grp] = l;
    }
    _Pragma("unroll") for (int i = 0; i < NAI; i++) {
        const int e = (lane + LK * i) * VW;
        if (A_EXACT || e < DV) {
            VSTORE_L(acc[i], ws + grp * DV + e);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float mx = NEG_SENTINEL;
    _Pragma("unroll") for (int i = 0; i < LG; i++) {
        mx = cl[i] != 0.0f ? fmax(mx, cm[i]) : mx;
    }
    float wt[LG], lt = 0.0f;
    _Pragma("unroll") for (int i = 0; i < LG; i++) {
        wt[i] = cl[i] != 0.0f ? exp(cm[i] - mx) : 0.0f;
        lt = cl[i] != 0.0f ? fma(cl[i], wt[i], lt) : lt;
    }
    const ulong o_row = ((ri.b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)ri.h) * DV;
    __global float *dst = nch == 1 ? o + o_row : part + g * (ulong)(DV + 2) + 2;
    const float inv = nch == 1 ? (lt > 0.0f ? 1.0f / lt : 0.0f) : 1.0f;
    for (int d = lid; d < DV; d += WGS) {
        float x = 0.0f;
        _Pragma("unroll") for (int i = 0; i < LG; i++) {
            x = cl[i] != 0.0f ? fma(ws[i * DV + d], wt[i], x) : x;
        }
        dst[d] = x * inv;
    }
    if (nch > 1 && lid == 0) {
        dst[-2] = mx;
        dst[-1] = lt;
    }
}

/* ---- Prefill: QR rows a work-group, LQ lanes a row, key tiles in local memory ---- */

#define QR (WGS / LQ)                 /* query rows a work-group */
#define NKL ((KT + LQ - 1) / LQ)      /* keys of a tile a lane scores */
#define NDL ((DV + LQ - 1) / LQ)      /* output elements a lane holds: lane, lane + LQ, ... */
#define KTS (DK + 1)                  /* the key tile's row stride: lanes reading the same
                                       * element of different keys fall in different banks */

/* Rows j0 .. j0 + n - 1 of keys or values (dim elements each, arguments as key_row) into a
 * local tile of row stride `stride`, the work-group's WGS work-items taking the elements in
 * turn: consecutive work-items, consecutive addresses. */
static void load_tile(__local float *tile, int dim, int stride, __global const KV_T *base,
                      ulong base_off, ulong step, __global const KV_T *fresh, ulong fresh_off,
                      ulong new_lo, ulong new_hi, int j0, int n, int lid) {
    for (int e = lid; e < n * dim; e += WGS) {
        const int jj = e / dim;
        const int d = e - jj * dim;
        __global const KV_T *row =
            key_row(base, base_off, step, fresh, fresh_off, new_lo, new_hi, (ulong)(j0 + jj));
        tile[jj * stride + d] = LOAD_KV(d, row) * ROW_SCALE(row, dim); /* int8: scaled */
    }
}

/*
 * A tile: the work-group stages keys and values jt .. jt + n - 1 (up to the last row's end),
 * then lane `lane` of row grp scores keys lane, lane + LQ, ... of the tile against the row's
 * query (in local memory), the scores go to the row's slot, and after a barrier every lane of
 * the row moves the row's running maximum once for the tile and adds the weighted value rows to
 * its output elements (lane, lane + LQ, ...). Rows past T compute a copy of the last row and
 * write nothing.
 */
__kernel __attribute__((reqd_work_group_size(WGS, 1, 1))) void
attention_qtile_gpu(ATTENTION_ARGS, __global float *part, int nch, int chunk) {
    __local float qs[QR * DK];
    __local float kt[KT * KTS];
    __local float vt[KT * DV];
    __local float sc[QR * KT];
    __local uchar okq[QR * KT];

    const int lid = (int)get_local_id(0);
    const int lane = lid % LQ, grp = lid / LQ;
    const ulong g = get_group_id(0);
    const ulong tile = g / (ulong)nch;
    const int c = (int)(g - tile * (ulong)nch);
    const ulong ntile = ((ulong)T + QR - 1) / QR;
    const ulong bh = tile / ntile;
    const int t0 = (int)(tile - bh * ntile) * QR;
    const int t = min(t0 + grp, T - 1);
    const bool mine = t0 + grp < T;
    const row_info ri =
        row_setup(bh * (ulong)T + (ulong)t, T, H, S, k_off, k_bstride, v_off, v_bstride, m_off,
                  m_sb, m_sh, m_st, causal, causal_base, lens, lens_off, has_lens);
    /* The tile's last row ends last (the causal end grows with t; lengths are per batch). */
    const row_info rl =
        row_setup(bh * (ulong)T + (ulong)min(t0 + QR - 1, T - 1), T, H, S, k_off, k_bstride, v_off,
                  v_bstride, m_off, m_sb, m_sh, m_st, causal, causal_base, lens, lens_off, has_lens);
    const int j0 = c * chunk;
    const int jmax = min(rl.end, j0 + chunk);
    const int je = min(ri.end, j0 + chunk);
    const ulong q_row = q_off + ((ri.b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)ri.h) * DK;
    for (int d = lane; d < DK; d += LQ) {
        qs[grp * DK + d] = q[q_row + (ulong)d] * scale;
    }
    float acc[NDL];
    _Pragma("unroll") for (int i = 0; i < NDL; i++) {
        acc[i] = 0.0f;
    }
    float m = NEG_SENTINEL, l = 0.0f;
    __local const float *qg = qs + grp * DK;
    __local float *sg = sc + grp * KT;
    __local uchar *og = okq + grp * KT;

    for (int jt = j0; jt < jmax; jt += KT) {
        const int n = min(KT, jmax - jt);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is no longer read (and qs is in) */
        load_tile(kt, DK, KTS, k, ri.k_base, ri.k_step, kn, ri.b * kn_bstride + (ulong)ri.h * KROW,
                  new_lo, new_hi, jt, n, lid);
        load_tile(vt, DV, DV, v, ri.v_base, ri.v_step, vn, ri.b * vn_bstride + (ulong)ri.h * VROW,
                  new_lo, new_hi, jt, n, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[NKL];
        _Pragma("unroll") for (int i = 0; i < NKL; i++) {
            s[i] = 0.0f;
        }
        for (int d = 0; d < DK; d++) {
            const float qd = qg[d];
            _Pragma("unroll") for (int i = 0; i < NKL; i++) {
                /* Keys past n are scored on row 0 (staged) and dropped below. */
                const int u = min(lane + LQ * i, n - 1);
                s[i] = fma(qd, kt[u * KTS + d], s[i]);
            }
        }
        _Pragma("unroll") for (int i = 0; i < NKL; i++) {
            const int u = lane + LQ * i;
            if (u < KT) {
                const int j = jt + u;
                og[u] = u < n && j < je && (!has_mask || mask[ri.m_base + (ulong)j * m_ss] != 0);
                sg[u] = keras_score(s[i]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        float bm = NEG_SENTINEL;
        for (int u = 0; u < n; u++) {
            bm = og[u] ? fmax(bm, sg[u]) : bm;
        }
        if (bm > m) {
            const float f = exp(m - bm); /* 0 for the first key (m is the sentinel) */
            l *= f;
            _Pragma("unroll") for (int i = 0; i < NDL; i++) {
                acc[i] *= f;
            }
            m = bm;
        }
        for (int u = 0; u < n; u++) {
            if (og[u]) {
                const float w = exp(sg[u] - m);
                l += w;
                _Pragma("unroll") for (int i = 0; i < NDL; i++) {
                    const int d = lane + LQ * i;
                    if (DV % LQ == 0 || d < DV) {
                        acc[i] = fma(w, vt[u * DV + d], acc[i]);
                    }
                }
            }
        }
    }
    if (!mine) {
        return;
    }
    const ulong r = bh * (ulong)T + (ulong)t;
    const ulong o_row = ((ri.b * (ulong)T + (ulong)ri.t) * (ulong)H + (ulong)ri.h) * DV;
    __global float *dst = nch == 1 ? o + o_row : part + (r * (ulong)nch + (ulong)c) * (DV + 2) + 2;
    const float inv = nch == 1 ? (l > 0.0f ? 1.0f / l : 0.0f) : 1.0f;
    _Pragma("unroll") for (int i = 0; i < NDL; i++) {
        const int d = lane + LQ * i;
        if (DV % LQ == 0 || d < DV) {
            dst[d] = acc[i] * inv;
        }
    }
    if (nch > 1 && lane == 0) {
        dst[-2] = m;
        dst[-1] = l;
    }
}
