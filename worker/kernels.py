"""Numba kernels: many members' training steps in one compiled call (the CPU hot loop).

A group's members share dim, dtype and the data recipe; each has its own depth, width, lr and
loss. Parameters of all members live in one flat array: layer i of member m is the
rows[m, i] x cols[m, i] row-major block at offset[m, i]. Members read the batch of their data
stream (`stream_of[m]`); several members may share a stream (common random numbers).

Per member and step (see worker/engine.py for the algebra): the suffix chain
s_N = 1, s_(i-1) = W_i^T s_i gives w = s_0; one pass over the batch gives the loss and
g = mean l'(y w.x) y x; then h_0 = g, and W_i -= lr s_i h_(i-1)^T, h_i = W_i h_(i-1).

The kernels touch no Python object, so they release the GIL (`nogil=True`): the worker's
heartbeat thread keeps beating however long a block of steps computes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic

from core.metrics import METRIC_NAMES
from worker.rng import square_point, step_key


class MetricColumns(NamedTuple):
    """The metrics the kernels compute, and the column of a block's `out` table each goes to:
    its place in the metric table (core/metrics.py). The columns travel as run-time values, not
    globals: numba's on-disk cache would keep a global's old value after the table changed."""

    directional_error: int
    angle: int
    loss: int
    norm: int
    balancedness: int
    train_loss: int
    train_accuracy: int


COLUMNS = MetricColumns(*(METRIC_NAMES.index(name) for name in MetricColumns._fields))


class BlockInputs(NamedTuple):
    """Everything `train_block` reads and writes, for a group of members and one block."""

    params: np.ndarray  # every member's layers, flat; written
    offset: np.ndarray  # (members, depth_max) int64: start of layer i of member m in params
    rows: np.ndarray  # (members, depth_max) int64
    cols: np.ndarray  # (members, depth_max) int64
    depth: np.ndarray  # (members,) int64
    lr: np.ndarray  # (members,) float64
    loss: np.ndarray  # (members,) LOGISTIC or EXPONENTIAL
    active: np.ndarray  # (members,) bool: inactive members are skipped
    stream_of: np.ndarray  # (members,): the data stream each member reads
    keys: np.ndarray  # (streams,) uint64: the streams' counter-based keys
    teachers: np.ndarray  # (streams, dim)
    x: np.ndarray  # (slots, streams, dim, batch): the batches; slot 0 written when resampling
    y: np.ndarray  # (slots, streams, batch)
    distribution: int  # UNIFORM_SPHERE or GAUSSIAN
    resample: bool  # a fresh batch every step (sgd), or the fixed sample (gd)
    drawn: bool  # iteration i's batches wait in slot i, drawn ahead by `draw_block`
    step: int  # the first step of this block
    count: int  # iterations in this block
    total_steps: int
    log_every: int
    out: np.ndarray  # (count + 1, members, metrics) float64: logged values; written
    out_steps: np.ndarray  # (count + 1,) int64: the logged steps; written
    columns: MetricColumns


@intrinsic
def _bits_to_float(_typingctx, bits):
    """The float64 whose IEEE-754 bits are the int64 `bits` (a register bitcast)."""

    def codegen(_context, builder, _signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


FAST = {"contract", "reassoc", "nsz", "arcp"}  # no nnan/ninf: divergence must stay visible
UNIFORM_SPHERE, GAUSSIAN = 0, 1
LOGISTIC, EXPONENTIAL = 0, 1
LOSS_CHUNK = 1000  # a product of 1000 factors in (1, 2] stays below 2^1000: no overflow
INV_LN2 = 1.0 / math.log(2.0)
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
E = tuple((-1.0) ** i / math.factorial(i) for i in range(17))  # Taylor coefficients of e^-r


CANDIDATE_CHUNK = 256


@njit(cache=True, nogil=True)
def _candidates(key, start, a, b):
    """Candidates start, start + 1, ... of a step's stream into a and b (their two
    coordinates): two flat arrays rather than one (n, 2), so the loop vectorises."""
    for i in range(a.shape[0]):
        a[i], b[i] = square_point(key, start + i)


@njit(cache=True, nogil=True)
def disk_points(key, count):
    """The first `count` candidates of a step's stream that fall in the unit disk, in order,
    as a (2, count + CANDIDATE_CHUNK) array whose columns beyond `count` are scratch.
    Candidates are drawn a chunk at a time and kept without branches."""
    out = np.empty((2, count + CANDIDATE_CHUNK))
    a, b = np.empty(CANDIDATE_CHUNK), np.empty(CANDIDATE_CHUNK)
    made, start = 0, 0
    while made < count:  # each chunk keeps at most CANDIDATE_CHUNK: the scratch suffices
        _candidates(key, start, a, b)
        for i in range(CANDIDATE_CHUNK):
            out[0, made], out[1, made] = a[i], b[i]
            made += a[i] * a[i] + b[i] * b[i] < 1.0
        start += CANDIDATE_CHUNK
    return out


@njit(cache=True, nogil=True)
def fill_batch(x, y, teacher, key, step, distribution):
    """Batch of `step` for one stream: x (dim, n), one point per column, so the per-point
    loops run over contiguous memory, and labels y = sign(v.x) in {-1, +1}."""
    k = step_key(key, step)
    if x.shape[0] == 2 and distribution == UNIFORM_SPHERE:
        _fill_circle(x, y, teacher, k)
        return
    _fill_normals(x, k)
    dim, n = x.shape
    if distribution == UNIFORM_SPHERE:
        for j in range(n):
            norm = 0.0
            for c in range(dim):
                norm += x[c, j] * x[c, j]
            norm = math.sqrt(norm)
            for c in range(dim):
                x[c, j] /= norm
    dot = np.zeros(n)
    for c in range(dim):
        for j in range(n):
            dot[j] += x[c, j] * teacher[c]
    for j in range(n):
        y[j] = 1.0 if dot[j] >= 0.0 else -1.0


@njit(cache=True, nogil=True, error_model="numpy")  # no zero check: the division vectorises
def _fill_circle(x, y, teacher, k):
    """Uniform points on the circle: the stream's disk points (a, b) with their angle
    doubled, ((a^2 - b^2), 2ab) / r^2, which needs no trigonometry."""
    n = x.shape[1]
    disk = disk_points(k, n)
    v0, v1 = teacher[0], teacher[1]
    for j in range(n):
        a, b = disk[0, j], disk[1, j]
        inverse = 1.0 / (a * a + b * b)
        x0, x1 = (a * a - b * b) * inverse, 2.0 * a * b * inverse
        x[0, j], x[1, j] = x0, x1
        y[j] = 2.0 * (x0 * v0 + x1 * v1 >= 0.0) - 1.0


@njit(cache=True, nogil=True)
def _fill_normals(x, k):
    """Standard normals in row-major order, two from each disk point (Marsaglia's polar
    method)."""
    dim, n = x.shape
    total = n * dim
    disk = disk_points(k, (total + 1) // 2)
    for made in range(total):
        a, b = disk[0, made // 2], disk[1, made // 2]
        r2 = a * a + b * b
        factor = math.sqrt(-2.0 * math.log(r2) / r2)
        x[made % dim, made // dim] = (a if made % 2 == 0 else b) * factor


@njit(cache=True, nogil=True)
def _suffix_chain(params, offset, rows, cols, m, depth, suffix):
    """suffix[i, :cols of layer i] = s_i = (W_N ... W_(i+1))^T; suffix[0, :dim] = w."""
    suffix[depth, 0] = 1.0
    for i in range(depth - 1, -1, -1):
        base, r, c = offset[m, i], rows[m, i], cols[m, i]
        for q in range(c):
            total = 0.0
            for p in range(r):
                total += params[base + p * c + q] * suffix[i + 1, p]
            suffix[i, q] = total


@njit(inline="always", fastmath={"contract"})
def exp_neg(t):
    """e^-t for t >= 0 to 1 ulp, in arithmetic the compiler can vectorise: t = k ln2 + r,
    a degree-16 Taylor polynomial for e^-r (r in [0, ln2)), and 2^-k built from its bits.
    Beyond t = 708 it returns e^-708 (~3e-308) where e^-t would underflow."""
    t = min(t, 708.0)
    k = np.int64(t * INV_LN2)
    r = (t - k * LN2_HI) - k * LN2_LO
    p = (((((((((((((((E[16] * r + E[15]) * r + E[14]) * r + E[13]) * r + E[12]) * r + E[11])
        * r + E[10]) * r + E[9]) * r + E[8]) * r + E[7]) * r + E[6]) * r + E[5]) * r + E[4])
        * r + E[3]) * r + E[2]) * r + E[1]) * r + E[0]  # fmt: skip
    return p * _bits_to_float((1023 - k) << 52)


@njit(cache=True, nogil=True, fastmath=FAST)
def _batch_pass(x, y, w, loss, g, scratch, want_loss):
    """g = mean l'(y w.x) y x (written into g); also the batch-mean loss (if `want_loss`)
    and accuracy. Per-point work is float64 in branch-free loops over contiguous columns."""
    dim, n = x.shape
    margin, weight, one_plus_e = scratch[0], scratch[1], scratch[2]
    for j in range(n):
        margin[j] = 0.0
    for c in range(dim):
        wc = float(w[c])
        for j in range(n):
            margin[j] += x[c, j] * wc
    loss_total, correct = 0.0, 0
    for j in range(n):
        margin[j] *= y[j]
        correct += margin[j] > 0.0
    if loss == LOGISTIC:
        loss_total = _logistic_pass(margin, y, weight, one_plus_e, want_loss)
    else:
        for j in range(n):
            e = math.exp(-margin[j])
            loss_total += e
            weight[j] = -e * y[j]
    for c in range(dim):
        total = 0.0
        for j in range(n):
            total += weight[j] * x[c, j]
        g[c] = total / n
    return loss_total / n, correct / n


@njit(cache=True, nogil=True, fastmath=FAST)
def _logistic_pass(margin, y, weight, one_plus_e, want_loss):
    """weight = l'(m) y for the logistic loss; returns the summed loss if `want_loss`.
    With e = e^-|m|: l'(m) = -(e if m > 0 else 1) / (1 + e) and
    softplus(-m) = max(-m, 0) + log(1 + e), the logs taken of chunk products. The main loop
    is branch-free and division-free (a division here stops it from vectorising)."""
    n = margin.shape[0]
    total = 0.0
    for j in range(n):
        m = margin[j]
        size = abs(m)
        e = exp_neg(size)
        weight[j] = -(1.0 + (m > 0.0) * (e - 1.0)) * _reciprocal(1.0 + e) * y[j]
        one_plus_e[j] = 1.0 + e
        total += 0.5 * (size - m)
    if want_loss:
        for start in range(0, n, LOSS_CHUNK):
            product = 1.0
            for j in range(start, min(start + LOSS_CHUNK, n)):
                product *= one_plus_e[j]
            total += math.log(product)
    return total


@njit(inline="always", fastmath={"contract"})
def _reciprocal(d):
    """1/d for d in [1, 2] to 1 ulp: a linear guess (error < 6%), then four Newton steps,
    each squaring the error."""
    r = 1.4571 - 0.5 * d
    r = r * (2.0 - d * r)
    r = r * (2.0 - d * r)
    r = r * (2.0 - d * r)
    return r * (2.0 - d * r)


@njit(cache=True, nogil=True)
def _update(params, offset, rows, cols, m, depth, lr, suffix, g, h, h_next):
    """W_i -= lr s_i h_(i-1)^T with h_0 = g, h_i = W_i h_(i-1) taken before W_i moves."""
    for c in range(cols[m, 0]):
        h[c] = g[c]
    for i in range(depth):
        base, r, c_count = offset[m, i], rows[m, i], cols[m, i]
        for p in range(r):
            total = 0.0
            row = base + p * c_count
            for q in range(c_count):
                total += params[row + q] * h[q]
            h_next[p] = total
            scale = lr * suffix[i + 1, p]
            for q in range(c_count):
                params[row + q] -= scale * h[q]
        for p in range(r):
            h[p] = h_next[p]


@njit(cache=True, nogil=True)
def balancedness(params, offset, rows, cols, m, depth):
    """max_i |W_(i+1)^T W_(i+1) - W_i W_i^T|_F (0 at depth 1)."""
    worst = 0.0
    for i in range(depth - 1):
        lower, upper = offset[m, i], offset[m, i + 1]
        size, in_lower, out_upper = rows[m, i], cols[m, i], rows[m, i + 1]
        total = 0.0
        for a in range(size):
            for b in range(size):
                gram_upper = 0.0
                for p in range(out_upper):
                    gram_upper += params[upper + p * size + a] * params[upper + p * size + b]
                gram_lower = 0.0
                for q in range(in_lower):
                    gram_lower += (
                        params[lower + a * in_lower + q] * params[lower + b * in_lower + q]
                    )
                total += (gram_upper - gram_lower) ** 2
        worst = max(worst, math.sqrt(total))
    return worst


@njit(cache=True, nogil=True)
def _log_row(out, row, m, columns, w, teacher, loss, accuracy, bal):
    """Write the metrics of member m into out[row, m, columns.<metric>]."""
    norm = 0.0
    for c in range(w.shape[0]):
        norm += w[c] * w[c]
    norm = math.sqrt(norm)
    error = 0.0
    for c in range(w.shape[0]):
        error += (w[c] / norm - teacher[c]) ** 2
    error = math.sqrt(error)
    out[row, m, columns.directional_error] = error
    out[row, m, columns.angle] = 2.0 * math.asin(min(error / 2.0, 1.0))
    out[row, m, columns.loss] = loss
    out[row, m, columns.norm] = norm
    out[row, m, columns.balancedness] = bal
    out[row, m, columns.train_loss] = loss  # the batch is the fixed training sample under gd
    out[row, m, columns.train_accuracy] = accuracy


@njit(cache=True, nogil=True)
def train_block(block):
    """Run `block.count` iterations from `block.step`: log the state when due, then update
    (the final step only logs). Returns (rows logged, step reached). Inactive members are
    skipped."""
    params, offset, rows, cols = block.params, block.offset, block.rows, block.cols
    depth = block.depth
    x, y, teachers, out = block.x, block.y, block.teachers, block.out
    members, streams, dim = depth.shape[0], block.keys.shape[0], x.shape[2]
    width = 1
    for m in range(members):
        for i in range(depth[m]):
            width = max(width, rows[m, i], cols[m, i])
    suffix = np.zeros((depth.max() + 1, width), dtype=x.dtype)
    h = np.zeros(width, dtype=x.dtype)
    h_next = np.zeros(width, dtype=x.dtype)
    g = np.zeros(dim, dtype=x.dtype)
    scratch = np.empty((3, x.shape[3]))
    logged, step, total_steps = 0, block.step, block.total_steps
    for i in range(block.count):
        slot = i if block.drawn else 0
        if block.resample and not block.drawn:
            for s in range(streams):
                fill_batch(x[0, s], y[0, s], teachers[s], block.keys[s], step, block.distribution)
        logs = step % block.log_every == 0 or step == total_steps
        if logs:
            block.out_steps[logged] = step
        for m in range(members):
            if not block.active[m]:
                continue
            s = block.stream_of[m]
            _suffix_chain(params, offset, rows, cols, m, depth[m], suffix)
            w = suffix[0, :dim]  # the scratch row is as wide as the widest layer
            batch_loss, accuracy = _batch_pass(
                x[slot, s], y[slot, s], w, block.loss[m], g, scratch, logs
            )
            if logs:
                bal = balancedness(params, offset, rows, cols, m, depth[m])
                _log_row(out, logged, m, block.columns, w, teachers[s], batch_loss, accuracy, bal)
            if step < total_steps:
                _update(params, offset, rows, cols, m, depth[m], block.lr[m], suffix, g, h, h_next)
        logged += logs
        if step == total_steps:
            break
        step += 1
    return logged, step


@njit(cache=True, nogil=True)
def draw_block(x, y, keys, teachers, distribution, step):
    """Every stream's batches of steps step, step + 1, ... into slots 0, 1, ... of x
    (slots, streams, dim, batch) and y (slots, streams, batch), for `train_block` to read
    with `drawn` set."""
    for i in range(x.shape[0]):
        for s in range(keys.shape[0]):
            fill_batch(x[i, s], y[i, s], teachers[s], keys[s], step + i, distribution)
