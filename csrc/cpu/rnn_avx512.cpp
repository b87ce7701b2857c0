// AVX-512 float32 cell updates (LSTM, GRU) for the recurrent time loops (rnn_loop.cpp): one pass over a
// row's gates instead of a call per nonlinearity and a loop per product. Per step and row the
// separate passes cost more than their arithmetic: at hidden 128 an LSTM row is 8 vectors
// per gate, and seven loops with their calls, trip-count checks and reloads took ~1700 cycles
// of a row step. Same math as the portable loops (vecmath_avx512.h's sigmoid and tanh).
#include "cpu/rnn.h"
#include "cpu/vecmath_avx512.h"

namespace kiln::cpu::avx512 {

// LSTM, one row: a = [sig sig tanh sig](g + x) (gate order i, f, g, o; g may be a), then
// c = f c + i g, c_save = c (if not null), h = o = o_gate tanh(c). H columns per gate.
void lstm_cell(const float* g, const float* x, float* a, float* c, float* h, float* o,
               float* c_save, int64_t H) {
  for (int64_t j = 0; j < H; j += 16) {
    const __mmask16 m = H - j >= 16 ? __mmask16(0xFFFF) : vm::tail_mask(H - j);
    auto in = [&](int64_t gate) {
      const int64_t k = gate * H + j;
      return _mm512_add_ps(_mm512_maskz_loadu_ps(m, g + k), _mm512_maskz_loadu_ps(m, x + k));
    };
    const __m512 ig = vm::sigmoid(in(0)), fg = vm::sigmoid(in(1)), gg = vm::tanh(in(2)),
                 og = vm::sigmoid(in(3));
    _mm512_mask_storeu_ps(a + j, m, ig);
    _mm512_mask_storeu_ps(a + H + j, m, fg);
    _mm512_mask_storeu_ps(a + 2 * H + j, m, gg);
    _mm512_mask_storeu_ps(a + 3 * H + j, m, og);
    const __m512 cn = _mm512_fmadd_ps(fg, _mm512_maskz_loadu_ps(m, c + j), _mm512_mul_ps(ig, gg));
    _mm512_mask_storeu_ps(c + j, m, cn);
    if (c_save) _mm512_mask_storeu_ps(c_save + j, m, cn);
    const __m512 hn = _mm512_mul_ps(og, vm::tanh(cn));
    _mm512_mask_storeu_ps(h + j, m, hn);
    _mm512_mask_storeu_ps(o + j, m, hn);
  }
}

// GRU, one row (gate order r, z, n; g = W_hh h + b_hh, may be a): gh_n_save = g_n (if not
// null), r, z = sig(g + x), n = tanh(x_n + r g_n), h = o = (1 - z) n + z h.
void gru_cell(const float* g, const float* x, float* a, float* h, float* o, float* gh_n_save,
              int64_t H) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t j = 0; j < H; j += 16) {
    const __mmask16 m = H - j >= 16 ? __mmask16(0xFFFF) : vm::tail_mask(H - j);
    const __m512 ghn = _mm512_maskz_loadu_ps(m, g + 2 * H + j);
    if (gh_n_save) _mm512_mask_storeu_ps(gh_n_save + j, m, ghn);
    const __m512 r = vm::sigmoid(
        _mm512_add_ps(_mm512_maskz_loadu_ps(m, g + j), _mm512_maskz_loadu_ps(m, x + j)));
    const __m512 z = vm::sigmoid(_mm512_add_ps(_mm512_maskz_loadu_ps(m, g + H + j),
                                               _mm512_maskz_loadu_ps(m, x + H + j)));
    const __m512 n = vm::tanh(_mm512_fmadd_ps(r, ghn, _mm512_maskz_loadu_ps(m, x + 2 * H + j)));
    _mm512_mask_storeu_ps(a + j, m, r);
    _mm512_mask_storeu_ps(a + H + j, m, z);
    _mm512_mask_storeu_ps(a + 2 * H + j, m, n);
    const __m512 hn = _mm512_fmadd_ps(_mm512_sub_ps(one, z), n,
                                      _mm512_mul_ps(z, _mm512_maskz_loadu_ps(m, h + j)));
    _mm512_mask_storeu_ps(h + j, m, hn);
    _mm512_mask_storeu_ps(o + j, m, hn);
  }
}

}  // namespace kiln::cpu::avx512
