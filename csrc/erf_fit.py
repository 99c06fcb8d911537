"""Derives the GELU constants of erf_constants.h. First a rational fit erf(x) ~= x P(x^2) / Q(x^2) on [0, 4], P and Q
of degree 5, Q(0) = 1, by linearized least squares (P - f Q weighted by x / Q of the previous pass), then Lawson's
reweighting toward the minimax error. Then the fit, in float64, is rewritten for the GELU the kernels evaluate:

    GELU(y) = y Phi(y),  Phi(y) = 1/2 + 1/2 erf(y / sqrt 2) ~= 1/2 + a R(a^2) / S(a^2),  a = clamp(y, +-4 sqrt 2)

with R_i = P_i / (2 sqrt 2 2^i) and S_i = Q_i / 2^i (u = a^2 = 2 x^2), so the kernels need no scaling of y before the
polynomials and no separate 1/2 y and 1 + erf steps. Prints the float32 constants as hex and the errors: erf's
(float64 fit) and GELU's, evaluated in fp32 the way the kernels do (fused multiply-adds, emulated in float64).
Needs only numpy.

    python csrc/erf_fit.py
"""
import math

import numpy as np

DEGREE_P, DEGREE_Q, CLAMP = 5, 5, 4.0
erf = np.vectorize(math.erf)


def fit():
    """float64 coefficients of P and Q (lowest power first) and the fit's max abs error on [0, CLAMP]."""
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
    return p, q, np.abs(err).max()


def gelu_constants(p, q):
    """(clamp, R, S) in float32 from the erf fit's float64 P and Q."""
    i = np.arange(len(p))
    r = (p / (2 * math.sqrt(2) * 2.0 ** i)).astype(np.float32)
    s = (q / 2.0 ** np.arange(len(q))).astype(np.float32)
    return np.float32(CLAMP * math.sqrt(2)), r, s


def fma32(a, b, c):
    """float32 a * b + c with one rounding (float64 holds the exact product of two float32 values)."""
    return (a.astype(np.float64) * b + c).astype(np.float32)


def gelu_fp32(y, clamp, r, s):
    """The kernels' GELU, operation by operation in float32."""
    a = np.clip(y, -clamp, clamp).astype(np.float32)
    u = a * a
    rv, sv = np.full_like(u, r[-1]), np.full_like(u, s[-1])
    for i in range(len(r) - 2, -1, -1):
        rv = fma32(rv, u, r[i])
        sv = fma32(sv, u, s[i])
    return y * fma32(a, rv / sv, np.float32(0.5))


if __name__ == "__main__":
    p, q, err64 = fit()
    clamp, r, s = gelu_constants(p, q)
    y = np.linspace(-30, 30, 1200001).astype(np.float32)
    exact = 0.5 * y.astype(np.float64) * (1 + erf(y.astype(np.float64) / math.sqrt(2)))
    err32 = (np.abs(gelu_fp32(y, clamp, r, s) - exact) / np.maximum(1, np.abs(y))).max()
    print(f"erf fit on [0, {CLAMP}]: max abs error {err64:.2g} (float64)")
    print(f"GELU on [-30, 30] in fp32: max error {err32:.2g} x max(1, |y|)")
    print("kGeluClamp =", float(clamp).hex())
    print("kGeluR =", ", ".join(float(v).hex() for v in r))
    print("kGeluS =", ", ".join(float(v).hex() for v in s))
