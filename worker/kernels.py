"""Numba kernels: many members' training steps in one compiled call (the CPU hot loop).

A group's members share dim, dtype and the data recipe; each has its own depth, width, lr and
loss. Parameters of all members live in one flat array: layer i of member m is the
rows[m, i] x cols[m, i] row-major block at offset[m, i]. Members read the batch of their data
stream (`stream_of[m]`); several members may share a stream (common random numbers).

Per member and step (see worker/engine.py for the algebra): the suffix chain
s_N = 1, s_(i-1) = W_i^T s_i gives w = s_0; one pass over the batch gives the loss and
g = mean l'(y w.x) y x; then h_0 = g, and W_i -= lr s_i h_(i-1)^T, h_i = W_i h_(i-1).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from worker.rng import square_point, step_key

FAST = {"contract", "reassoc", "nsz", "arcp"}  # no nnan/ninf: divergence must stay visible
UNIFORM_SPHERE, GAUSSIAN = 0, 1
LOGISTIC, EXPONENTIAL = 0, 1
COLUMNS = ("directional_error", "angle", "loss", "norm", "balancedness", "accuracy")
LOSS_CHUNK = 32  # products of up to 32 factors in (1, 2] stay far below overflow


CANDIDATE_CHUNK = 256


@njit(cache=True)
def disk_points(key, count):
    """The first `count` candidates of a step's stream that fall in the unit disk, in order.
    Candidates are drawn a chunk at a time and kept without branches, so both loops can be
    vectorised; rows beyond `count` are scratch."""
    out = np.empty((count + CANDIDATE_CHUNK, 2))
    candidates = np.empty((CANDIDATE_CHUNK, 2))
    made, start = 0, 0
    while made < count:
        for i in range(CANDIDATE_CHUNK):
            candidates[i, 0], candidates[i, 1] = square_point(key, start + i)
        for i in range(CANDIDATE_CHUNK):
            a, b = candidates[i, 0], candidates[i, 1]
            out[made, 0], out[made, 1] = a, b
            made += a * a + b * b < 1.0
            if made == count:
                break
        start += CANDIDATE_CHUNK
    return out


@njit(cache=True)
def fill_batch(x, y, teacher, key, step, distribution):
    """Batch of `step` for one stream: x (n, dim) and labels y = sign(v.x) in {-1, +1}."""
    n, dim = x.shape
    k = step_key(key, step)
    if dim == 2 and distribution == UNIFORM_SPHERE:
        # A uniform point (a, b) of the unit disk has a uniform angle; doubling it with
        # ((a^2 - b^2), 2ab) / r^2 needs no trigonometry.
        disk = disk_points(k, n)
        for j in range(n):
            a, b = disk[j, 0], disk[j, 1]
            inverse = 1.0 / (a * a + b * b)
            x[j, 0] = (a * a - b * b) * inverse
            x[j, 1] = 2.0 * a * b * inverse
    else:
        _fill_normals(x, k)
        if distribution == UNIFORM_SPHERE:
            for j in range(n):
                norm = 0.0
                for c in range(dim):
                    norm += x[j, c] * x[j, c]
                norm = math.sqrt(norm)
                for c in range(dim):
                    x[j, c] /= norm
    for j in range(n):
        dot = 0.0
        for c in range(dim):
            dot += x[j, c] * teacher[c]
        y[j] = 1.0 if dot >= 0.0 else -1.0


@njit(cache=True)
def _fill_normals(x, k):
    """Standard normals in row-major order, two from each disk point (Marsaglia's polar
    method)."""
    n, dim = x.shape
    total = n * dim
    disk = disk_points(k, (total + 1) // 2)
    for made in range(total):
        a, b = disk[made // 2, 0], disk[made // 2, 1]
        r2 = a * a + b * b
        factor = math.sqrt(-2.0 * math.log(r2) / r2)
        x[made // dim, made % dim] = (a if made % 2 == 0 else b) * factor


@njit(cache=True)
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


@njit(cache=True, fastmath=FAST)
def _batch_pass(x, y, w, loss, g, one):
    """Batch-mean loss, accuracy, and g = mean l'(y w.x) y x (written into g). `one` carries
    the run's dtype, so float32 runs do their per-point arithmetic in float32."""
    n, dim = x.shape
    zero = one - one
    for c in range(dim):
        g[c] = zero
    loss_total, correct, product, in_chunk = 0.0, 0, 1.0, 0
    for j in range(n):
        z = zero
        for c in range(dim):
            z += x[j, c] * w[c]
        margin = y[j] * z
        correct += margin > zero
        if loss == LOGISTIC:
            e = math.exp(-abs(margin))
            # softplus(-m) = max(-m, 0) + log(1 + e): the logs are taken of chunk products.
            loss_total += max(-margin, zero)
            product *= 1.0 + e
            in_chunk += 1
            if in_chunk == LOSS_CHUNK:
                loss_total += math.log(product)
                product, in_chunk = 1.0, 0
            slope = -(e if margin > zero else one) / (one + e)
        else:
            slope = -math.exp(-margin)
            loss_total -= slope
        weight = slope * y[j]
        for c in range(dim):
            g[c] += weight * x[j, c]
    loss_total += math.log(product)
    for c in range(dim):
        g[c] /= n
    return loss_total / n, correct / n


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def _log_row(out, row, m, w, teacher, loss, accuracy, bal):
    norm = 0.0
    for c in range(w.shape[0]):
        norm += w[c] * w[c]
    norm = math.sqrt(norm)
    error = 0.0
    for c in range(w.shape[0]):
        error += (w[c] / norm - teacher[c]) ** 2
    error = math.sqrt(error)
    out[row, m, 0] = error
    out[row, m, 1] = 2.0 * math.asin(min(error / 2.0, 1.0))
    out[row, m, 2] = loss
    out[row, m, 3] = norm
    out[row, m, 4] = bal
    out[row, m, 5] = accuracy


@njit(cache=True)
def train_block(
    params, offset, rows, cols, depth, lr, loss, active, stream_of,
    keys, teachers, x, y, distribution, resample,
    step, count, total_steps, log_every, out, out_steps, one,
):  # fmt: skip
    """Run `count` iterations from `step`: log the state when due, then update (the final
    step only logs). Returns (rows logged, step reached). Inactive members are skipped."""
    members, streams = depth.shape[0], keys.shape[0]
    width = 1
    for m in range(members):
        for i in range(depth[m]):
            width = max(width, rows[m, i], cols[m, i])
    suffix = np.zeros((depth.max() + 1, width), dtype=x.dtype)
    h = np.zeros(width, dtype=x.dtype)
    h_next = np.zeros(width, dtype=x.dtype)
    g = np.zeros(x.shape[2], dtype=x.dtype)
    logged = 0
    for _ in range(count):
        if resample:
            for s in range(streams):
                fill_batch(x[s], y[s], teachers[s], keys[s], step, distribution)
        logs = step % log_every == 0 or step == total_steps
        if logs:
            out_steps[logged] = step
        for m in range(members):
            if not active[m]:
                continue
            s = stream_of[m]
            _suffix_chain(params, offset, rows, cols, m, depth[m], suffix)
            batch_loss, accuracy = _batch_pass(x[s], y[s], suffix[0], loss[m], g, one)
            if logs:
                bal = balancedness(params, offset, rows, cols, m, depth[m])
                _log_row(out, logged, m, suffix[0], teachers[s], batch_loss, accuracy, bal)
            if step < total_steps:
                _update(params, offset, rows, cols, m, depth[m], lr[m], suffix, g, h, h_next)
        logged += logs
        if step == total_steps:
            break
        step += 1
    return logged, step
