// exp(x) for x <= 0 as the vector softmax evaluates it, shared by the AVX2 and AVX-512 code so
// that both give the same bits per element: x = n ln 2 + r with n = round(x log2 e) and ln 2 split
// in two (so that r is computed exactly), exp(r) by its degree-7 Taylor polynomial in Horner form,
// scaled by 2^n; below kLowest (-inf included) the result is 0.
#pragma once

namespace lmi::attn::detail::exp_poly {

constexpr float kLowest = -87.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
// Horner coefficients, highest degree first: 1/7!, 1/6!, ..., 1/1!, 1/0!.
constexpr float kTaylor[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                              1.0f / 6.0f,    0.5f,          1.0f,          1.0f};

}  // namespace lmi::attn::detail::exp_poly
