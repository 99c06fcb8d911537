"""Derives the erf constants of erf_constants.h: a rational fit erf(x) ~= x P(x^2) / Q(x^2) on [0, 4], P and Q of
degree 5, Q(0) = 1, by linearized least squares (P - f Q weighted by x / Q of the previous pass), then Lawson's
reweighting toward the minimax error. Prints the float32 coefficients as hex and the fit's errors, float64 and
evaluated in fp32 the way the kernels do (Horner, plain multiplies and adds). Needs only numpy.

    python csrc/erf_fit.py
"""
import math

import numpy as np

DEGREE_P, DEGREE_Q, CLAMP = 5, 5, 4.0
erf = np.vectorize(math.erf)


def fit():
    x = np.concatenate([np.linspace(0, CLAMP, 20001)[1:], [1e-6, 1e-4, 1e-3]])
    z, f = x * x, erf(x) / x
    powers_p = np.vstack([z ** k for k in range(DEGREE_P + 1)]).T
    powers_q = np.vstack([z ** k for k in range(1, DEGREE_Q + 1)]).T
    q_prev, weight = np.ones_like(z), np.ones_like(z)
    for step in range(60):
        a = np.hstack([powers_p, -f[:, None] * powers_q])
        w = x / q_prev * weight
        coef, *_ = np.linalg.lstsq(a * w[:, None], f * w, rcond=None)
        p, q = coef[:DEGREE_P + 1], np.concatenate([[1.0], coef[DEGREE_P + 1:]])
        q_prev = np.polyval(q[::-1], z)
        err = x * np.polyval(p[::-1], z) / q_prev - erf(x)
        if step > 10:  # Lawson: weight the points where the error is largest
            weight = weight * np.sqrt(np.abs(err) / np.abs(err).max()) + 1e-300
            weight /= weight.max()
    return p.astype(np.float32), q.astype(np.float32), np.abs(err).max()


def erf_fp32(x, p, q):
    """The kernels' evaluation, operation by operation in float32."""
    a = np.clip(x.astype(np.float32), -CLAMP, CLAMP).astype(np.float32)
    z = a * a
    pv, qv = np.full_like(z, p[-1]), np.full_like(z, q[-1])
    for i in range(len(p) - 2, -1, -1):
        pv = pv * z + p[i]
        qv = qv * z + q[i]
    return (a * pv) / qv


if __name__ == "__main__":
    p, q, err64 = fit()
    x = np.linspace(-6, 6, 600001).astype(np.float32)
    err32 = np.abs(erf_fp32(x, p, q).astype(np.float64) - erf(x.astype(np.float64))).max()
    print(f"max abs error on [-6, 6]: {err64:.2g} (float64 fit), {err32:.2g} (evaluated in fp32)")
    print("kErfP =", ", ".join(float(v).hex() for v in p))
    print("kErfQ =", ", ".join(float(v).hex() for v in q))
