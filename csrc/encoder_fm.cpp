#include "encoder_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "attention_fm.h"
#include "dispatch.h"
#include "feed_forward_fm.h"
#include "gemm_ops.h"
#include "layer_norm_fm.h"
#include "packed_weight.h"
#include "panel_ops.h"
#include "self_attention_fm.h"

namespace fastdistilbert {
namespace {

// One layer's parsed weights, LayerNorm parameters and how each Linear quantizes its input.
struct Layer {
  GemmParams qkv, out, lin1, lin2;
  const float *sa_gamma, *sa_beta, *out_gamma, *out_beta;
  double sa_eps, out_eps;
  CodeScheme qkv_in, out_in, lin1_in, lin2_in;
};

// Checks activation_params ([4 * layers, 2] float32: scale and zero point of each Linear's input, or undefined for
// per-token codes) and points every layer's schemes at its rows.
void parse_activation_params(const std::optional<at::Tensor>& params, std::vector<Layer>& layers, const char* op) {
  if (!params.has_value()) return;
  const at::Tensor& a = *params;
  const int64_t n = int64_t(layers.size());
  TORCH_CHECK(a.scalar_type() == at::kFloat && a.dim() == 2 && a.size(0) == 4 * n && a.size(1) == 2 &&
              a.is_contiguous(), op, ": activation_params must be a contiguous float32 [4 * layers, 2] = [", 4 * n,
              ", 2] tensor (scale, zero point of the qkv, out, lin1 and lin2 inputs of each layer), got ",
              a.scalar_type(), " ", a.sizes());
  const float* v = a.data_ptr<float>();
  for (int64_t j = 0; j < 4 * n; ++j) {
    const float scale = v[2 * j], zp = v[2 * j + 1];
    TORCH_CHECK(std::isfinite(scale) && scale > 0 && zp >= 0 && zp <= 255 && zp == std::nearbyint(zp), op,
                ": activation_params row ", j, " (layer ", j / 4, ") must hold a positive finite scale and an integer ",
                "zero point in [0, 255], got ", scale, ", ", zp);
  }
  for (int64_t i = 0; i < n; ++i) {
    CodeScheme* schemes[4] = {&layers[i].qkv_in, &layers[i].out_in, &layers[i].lin1_in, &layers[i].lin2_in};
    for (int j = 0; j < 4; ++j) schemes[j]->params = v + 2 * (4 * i + j);
  }
}

std::vector<Layer> parse_layers(const at::Tensor& h, at::TensorList packed, at::TensorList norms,
                                at::ArrayRef<double> eps, int64_t n_heads, const char* op) {
  TORCH_CHECK(h.scalar_type() == at::kFloat && h.dim() == 2 && h.is_contiguous(), op,
              ": h must be a contiguous float32 [dim, tokens] tensor, got ", h.scalar_type(), " ", h.sizes());
  const int64_t dim = h.size(0), n = int64_t(packed.size()) / 4;
  TORCH_CHECK(n > 0 && int64_t(packed.size()) == 4 * n, op,
              ": packed must hold 4 weights per layer (qkv, out, lin1, lin2), got ", packed.size());
  TORCH_CHECK(int64_t(norms.size()) == 4 * n, op, ": norms must hold 4 tensors per layer (the attention and output ",
              "LayerNorms' weight and bias): ", 4 * n, " for ", n, " layers, got ", norms.size());
  TORCH_CHECK(int64_t(eps.size()) == 2 * n, op, ": eps must hold 2 values per layer: ", 2 * n, " for ", n,
              " layers, got ", eps.size());
  TORCH_CHECK(n_heads > 0 && dim % n_heads == 0, op, ": dim = ", dim, " is not divisible by n_heads = ", n_heads);
  std::vector<Layer> layers(n);
  for (int64_t i = 0; i < n; ++i) {
    Layer& l = layers[i];
    GemmParams* weights[4] = {&l.qkv, &l.out, &l.lin1, &l.lin2};
    for (int j = 0; j < 4; ++j) {
      *weights[j] = GemmParams{};
      parse_packed_weight(packed[4 * i + j], *weights[j], op);
    }
    TORCH_CHECK(l.qkv.K == dim && l.qkv.N == 3 * dim, op, ": layer ", i, "'s QKV weight is ", l.qkv.N, " x ",
                l.qkv.K, ", not 3 dim x dim = ", 3 * dim, " x ", dim);
    TORCH_CHECK(l.out.K == dim && l.out.N == dim, op, ": layer ", i, "'s output projection is ", l.out.N, " x ",
                l.out.K, ", not dim x dim = ", dim, " x ", dim);
    TORCH_CHECK(l.lin1.K == dim && l.lin2.N == dim && l.lin2.K == l.lin1.N, op, ": layer ", i,
                "'s feed-forward weights are ", l.lin1.N, " x ", l.lin1.K, " and ", l.lin2.N, " x ", l.lin2.K,
                ", not ffn_dim x dim and dim x ffn_dim with dim = ", dim);
    check_layer_norm_args(op, h, norms[4 * i], norms[4 * i + 1], eps[2 * i]);
    check_layer_norm_args(op, h, norms[4 * i + 2], norms[4 * i + 3], eps[2 * i + 1]);
    l.sa_gamma = norms[4 * i].data_ptr<float>(), l.sa_beta = norms[4 * i + 1].data_ptr<float>();
    l.out_gamma = norms[4 * i + 2].data_ptr<float>(), l.out_beta = norms[4 * i + 3].data_ptr<float>();
    l.sa_eps = eps[2 * i], l.out_eps = eps[2 * i + 1];
  }
  return layers;
}

// What went wrong in one sequence: the layer and the activations that were not finite (what == nullptr: fine).
struct Failure {
  int64_t layer = -1;
  const char* what = nullptr;
};

// A layer's panels for one run of tokens (a whole sequence, or a range of a batch's tokens): its input x (the
// feed-forward sublayer writes the layer's output here), the attention sublayer's output x1 and the attention context.
struct TokenPanels {
  ActivationPanel x, x1, context;
  SublayerTail tail;
  PanelGemm lin1;
  HiddenPanel hidden;

  void resize(int64_t dim, int64_t L) { x.resize(dim, L), x1.resize(dim, L), context.resize(dim, L); }

  // x's fp32 values: columns [t0, t0 + L) of h_in [dim][T], and their codes for the first layer's QKV.
  bool load(const KernelTable& k, const std::vector<Layer>& layers, const float* h_in, int64_t T, int64_t t0,
            int64_t L) {
    const int64_t dim = layers[0].out.N;
    resize(dim, L);
    copy_rows(h_in + t0, T, x.h.data(), L, dim, L);
    return x.quantize(k, dim, L, layers[0].qkv_in);
  }

  // Layer i after its attention (whose output is in context.h): the output projection + residual + LayerNorm into
  // x1, then the feed-forward sublayer block by block into x, coded for the next layer's QKV (the last layer's codes
  // go unused).
  Failure finish_layer(const KernelTable& k, const std::vector<Layer>& layers, int64_t i, int64_t L) {
    const Layer& w = layers[i];
    const int64_t dim = w.out.N;
    const CodeScheme next_in = i + 1 < int64_t(layers.size()) ? layers[i + 1].qkv_in : CodeScheme{};
    if (!context.quantize(k, dim, L, w.out_in)) return {i, "the attention context"};
    if (!tail.run(k, w.out, context.codes.data(), context.scale.data(), context.zp.data(), L, 0, x.h.data(),
                  x1.target(L, w.sa_gamma, w.sa_beta, w.sa_eps, w.lin1_in)))
      return {i, "the attention sublayer's normalized output"};
    GemmParams p1 = w.lin1;
    lin1.pack(k, p1, x1.codes.data(), false, x1.scale.data(), x1.zp.data(), L);
    for (int64_t block = 0, blocks = feed_forward_blocks(L); block < blocks; ++block) {
      const int64_t b = block * kFeedForwardBlock, width = feed_forward_width(L, block);
      if (!hidden.compute(k, p1, b, width, w.lin2_in)) return {i, "the first feed-forward linear's output"};
      if (!tail.run(k, w.lin2, hidden.codes.data(), hidden.scale.data(), hidden.zp.data(), width, b, x1.h.data(),
                    x.target(L, w.out_gamma, w.out_beta, w.out_eps, next_in)))
        return {i, "the feed-forward sublayer's normalized output"};
    }
    return {};
  }
};

constexpr const char* kAttentionInputs = "Q, K or V (or the INT8 attention scores)";

// Per-thread scratch for one sequence at a time, kept between calls (no allocation or page faults per call).
struct SequenceEncoder {
  TokenPanels panels;
  SequenceAttention attention;

  // Every layer on columns [t0, t0 + L) of h_in [dim][T], the result into the same columns of h_out.
  Failure run(const KernelTable& k, const std::vector<Layer>& layers, int64_t n_heads, float scaling,
              bool int8_attention, const float* h_in, float* h_out, int64_t T, int64_t t0, int64_t L) {
    if (!panels.load(k, layers, h_in, T, t0, L)) return {0, "the input"};
    for (int64_t i = 0; i < int64_t(layers.size()); ++i) {
      const ActivationPanel& x = panels.x;
      if (!attention.run(k, layers[i].qkv, x.codes.data(), false, x.scale.data(), x.zp.data(), L, n_heads, scaling,
                         panels.context.h.data(), L, int8_attention))
        return {i, kAttentionInputs};
      const Failure f = panels.finish_layer(k, layers, i, L);
      if (f.what != nullptr) return f;
    }
    copy_rows(panels.x.h.data(), L, h_out + t0, T, layers[0].out.N, L);
    return {};
  }
};

// Every token of the batch on every thread, for batches whose whole sequences cannot keep the threads busy (a batch
// of one, or of unequal lengths): each thread keeps a range of the tokens through every layer in its own panels
// (QKV projection, output projection, LayerNorms, feed-forward and quantization are per token), and only the
// attention, which needs every token of a sequence, is split by (sequence, head) instead. Two parallel regions per
// layer (the attention by heads; the rest of the layer and the next one's QKV by ranges) where the layer-by-layer
// ops run six, each split by rows (their LayerNorms and quantizations then read what the other threads wrote); a
// third region for the QKV apart measured 0.99-1.03x the time (1 x 128-384 tokens). Kept between calls by the
// calling thread.
struct TokenSplitEncoder {
  struct Range {
    int64_t t0 = 0, L = 0;  // tokens [t0, t0 + L) of the batch
    TokenPanels panels;
    PanelGemm qkv;
  };
  std::vector<Range> ranges;
  AlignedVector<float> qkv, context;  // the batch's [3 dim][T] and [dim][T]

  // Splits T tokens into at most `threads` ranges of whole token vectors (`lane` tokens), as even as they go.
  void split(int64_t T, int64_t lane, int64_t threads) {
    const int64_t vectors = (T + lane - 1) / lane, n = std::min(threads, vectors);
    ranges.resize(n);
    for (int64_t r = 0, first = 0; r < n; ++r) {
      const int64_t count = vectors / n + (r < vectors % n);
      ranges[r].t0 = first * lane;
      ranges[r].L = std::min(count * lane, T - ranges[r].t0);
      first += count;
    }
  }

  // Runs step(range) on every range in parallel; the first failure by range order, and that range's tokens.
  template <typename Step>
  Failure each_range(Step step, int64_t* bad_begin = nullptr, int64_t* bad_end = nullptr) {
    std::vector<Failure> failures(ranges.size());
    at::parallel_for(0, int64_t(ranges.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) failures[r] = step(ranges[r]);
    });
    for (size_t r = 0; r < ranges.size(); ++r)
      if (failures[r].what != nullptr) {
        if (bad_begin) *bad_begin = ranges[r].t0, *bad_end = ranges[r].t0 + ranges[r].L;
        return failures[r];
      }
    return {};
  }

  // Every layer on h_in [dim][T] into h_out; on failure, [*bad_begin, *bad_end) are the failing range's tokens (or
  // those of the sequence whose attention failed).
  Failure run(const KernelTable& k, const std::vector<Layer>& layers, int64_t n_heads, float scaling,
              bool int8_attention, const float* h_in, float* h_out, int64_t T, at::IntArrayRef lengths,
              const std::vector<int64_t>& first, int64_t* bad_begin, int64_t* bad_end) {
    const int64_t dim = layers[0].out.N;
    split(T, k.token_align(kDense), at::get_num_threads());
    qkv.resize(3 * dim * T), context.resize(dim * T);
    const int64_t n_layers = int64_t(layers.size());
    // The range's tokens' QKV of layer i into their columns of qkv.
    const auto project = [&](Range& r, int64_t i) {
      GemmParams a = layers[i].qkv;
      a.ld = T, a.out_shift = r.t0, a.gelu = 0;
      a.residual = nullptr, a.out_f32 = qkv.data(), a.out_u8 = nullptr, a.out_acc = nullptr;
      const ActivationPanel& x = r.panels.x;
      r.qkv.run(k, a, x.codes.data(), false, x.scale.data(), x.zp.data(), r.L);
    };
    Failure f = each_range(
        [&](Range& r) -> Failure {
          if (!r.panels.load(k, layers, h_in, T, r.t0, r.L)) return {0, "the input"};
          project(r, 0);
          return {};
        },
        bad_begin, bad_end);
    for (int64_t i = 0; i < n_layers && f.what == nullptr; ++i) {
      if (!int8_attention) {
        attention_fm_into(k, qkv.data(), dim, T, lengths, first, n_heads, scaling, context.data());
      } else if (const int64_t s = attention_int8_into(k, qkv.data(), dim, T, lengths, first, n_heads, scaling,
                                                       context.data());
                 s >= 0) {
        *bad_begin = first[s], *bad_end = first[s] + lengths[s];
        return {i, kAttentionInputs};
      }
      // The rest of layer i, then (in the same parallel region) the next layer's QKV, or the range's output.
      f = each_range(
          [&](Range& r) {
            copy_rows(context.data() + r.t0, T, r.panels.context.h.data(), r.L, dim, r.L);
            const Failure g = r.panels.finish_layer(k, layers, i, r.L);
            if (g.what == nullptr) {
              if (i + 1 < n_layers)
                project(r, i + 1);
              else
                copy_rows(r.panels.x.h.data(), r.L, h_out + r.t0, T, dim, r.L);
            }
            return g;
          },
          bad_begin, bad_end);
    }
    return f;
  }
};

// Whether T tokens run on TokenSplitEncoder (when whole sequences cannot keep the threads busy): with at least
// kSplitTokens tokens per thread. Alternating with the layer-by-layer ops in one process (2 threads, median of 20-30
// forwards), the time of a 1 x L forward of the 80% (4,1) model: L = 100-384 0.88-0.95x, 72-96 0.97-1.01x, 64
// 1.07-1.11x and 16 1.13x (ranges of one or two token vectors, whose GEMM tiles are the slow short ones, or a single
// range); at 100-384 tokens dense 0.71-0.92x, (1,4) 0.85-1.11x (three runs, the two above 1 in the noisiest); the
// first 96 XQuAD inputs (question and context, each input both ways back to back) 0.93-0.94x; batches of unequal
// lengths 300 + 60, 384 + 128 and 128 + 40: 0.93x, 0.97x and 0.84x.
constexpr int64_t kSplitTokens = 48;
bool split_tokens(int64_t T, int64_t threads) { return threads > 1 && T >= kSplitTokens * threads; }

// The message of a failure in `where` ("sequence 3").
std::string failure_message(const Failure& f, const std::string& where) {
  return std::string(f.what) + " of layer " + std::to_string(f.layer) + " contains NaN or Inf (in " + where +
         "); the input must be finite";
}

// "sequence s" or "sequences a-b": those holding tokens [t0, t1) of the batch (first: each one's first token).
std::string sequences_at(const std::vector<int64_t>& first, int64_t t0, int64_t t1) {
  const auto holding = [&](int64_t t) { return std::upper_bound(first.begin(), first.end(), t) - first.begin() - 1; };
  const int64_t a = holding(t0), b = holding(t1 - 1);
  return a == b ? "sequence " + std::to_string(a) : "sequences " + std::to_string(a) + "-" + std::to_string(b);
}

// The reference order of encoder_fm, op by op (each splits its rows or tokens across the threads).
at::Tensor layer_by_layer(const at::Tensor& h, at::TensorList packed, at::TensorList norms, at::ArrayRef<double> eps,
                          at::IntArrayRef lengths, int64_t n_heads, double scaling, bool int8_attention) {
  const int64_t dim = h.size(0);
  auto [q, scale, zp] = quantize_per_token(h);
  at::Tensor x = h;
  for (int64_t i = 0; i < int64_t(packed.size()) / 4; ++i) {
    at::Tensor h1, q1, scale1, zp1;
    if (int8_attention) {
      const at::Tensor qkv = quantized_linear(q, scale, zp, packed[4 * i], 3 * dim, false, std::nullopt, std::nullopt,
                                              std::nullopt);
      const at::Tensor ctx = attention_int8_fm(qkv, lengths, n_heads, scaling);
      std::tie(h1, q1, scale1, zp1) = layer_norm_quantize_fm(
          dynamic_quantized_linear(ctx, packed[4 * i + 1], dim, false, x), norms[4 * i], norms[4 * i + 1], eps[2 * i]);
    } else {
      std::tie(h1, q1, scale1, zp1) = attention_block_fm(q, scale, zp, packed[4 * i], packed[4 * i + 1], x,
                                                         norms[4 * i], norms[4 * i + 1], eps[2 * i], dim, lengths,
                                                         n_heads, scaling);
    }
    std::tie(x, q, scale, zp) = feed_forward_block_fm(q1, scale1, zp1, packed[4 * i + 2], packed[4 * i + 3], h1,
                                                      norms[4 * i + 2], norms[4 * i + 3], eps[2 * i + 1]);
  }
  return x;
}

// The reference order of encoder_fm for static activation codes (the Python runtime's layer path for calibrated
// models): each Linear quantizes its fp32 input with its own scale and zero point, LayerNorms apart.
at::Tensor layer_by_layer_static(const at::Tensor& h, at::TensorList packed, at::TensorList norms,
                                 at::ArrayRef<double> eps, at::IntArrayRef lengths, int64_t n_heads, double scaling,
                                 bool int8_attention, const std::vector<Layer>& layers) {
  auto linear = [&](const at::Tensor& x, CodeScheme in, const GemmParams& w, const at::Tensor& packed_w, bool gelu,
                    const std::optional<at::Tensor>& residual) {
    const double scale = in.params[0];
    const int64_t zero_point = int64_t(in.params[1]);
    return quantized_linear(quantize_per_tensor_fm(x, scale, zero_point), at::full({1}, scale, x.options()),
                            at::full({1}, zero_point, x.options().dtype(at::kInt)), packed_w, w.N, gelu, residual,
                            std::nullopt, std::nullopt);
  };
  at::Tensor x = h;
  for (int64_t i = 0; i < int64_t(layers.size()); ++i) {
    const Layer& l = layers[i];
    const at::Tensor qkv = linear(x, l.qkv_in, l.qkv, packed[4 * i], false, std::nullopt);
    const at::Tensor ctx = int8_attention ? attention_int8_fm(qkv, lengths, n_heads, scaling)
                                          : attention_fm(qkv, lengths, n_heads, scaling);
    const at::Tensor h1 = layer_norm_fm(linear(ctx, l.out_in, l.out, packed[4 * i + 1], false, x), norms[4 * i],
                                        norms[4 * i + 1], eps[2 * i]);
    const at::Tensor f = linear(h1, l.lin1_in, l.lin1, packed[4 * i + 2], true, std::nullopt);
    x = layer_norm_fm(linear(f, l.lin2_in, l.lin2, packed[4 * i + 3], false, h1), norms[4 * i + 2], norms[4 * i + 3],
                      eps[2 * i + 1]);
  }
  return x;
}

// Whether whole sequences, longest first, each to the thread free first, keep every thread busy: the busiest
// thread's tokens at most 1.25x the average. Measured on 2 threads, 80% (4,1), 128-token sequences, depth first vs
// layer by layer: batch 2 13.4 vs 15.3 ms, batch 8 55.3 vs 61.9; batch 5 (1.2x) a tie within noise; batch 3
// (1.33x) 25.6 vs 24.5. Fewer sequences than threads always leave a thread idle.
bool balanced(const std::vector<int64_t>& order, at::IntArrayRef lengths, int64_t threads) {
  if (int64_t(order.size()) < threads) return false;
  std::vector<int64_t> load(threads, 0);
  int64_t total = 0;
  for (int64_t s : order) {
    *std::min_element(load.begin(), load.end()) += lengths[s];
    total += lengths[s];
  }
  return 4 * threads * *std::max_element(load.begin(), load.end()) <= 5 * total;
}

}  // namespace

at::Tensor encoder_fm(const at::Tensor& h, at::TensorList packed, at::TensorList norms, at::ArrayRef<double> eps,
                      at::IntArrayRef lengths, int64_t n_heads, double scaling, bool int8_attention,
                      const std::optional<at::Tensor>& activation_params) {
  const char* op = "encoder_fm";
  const KernelTable& k = active_kernels();
  std::vector<Layer> layers = parse_layers(h, packed, norms, eps, n_heads, op);
  parse_activation_params(activation_params, layers, op);
  const int64_t dim = h.size(0), T = h.size(1);
  const std::vector<int64_t> first = sequence_starts(op, lengths, T, "h");
  TORCH_INTERNAL_ASSERT(kFeedForwardBlock % k.token_align(k4x1) == 0);
  // Longest first, each thread taking the next sequence when it is free: unequal lengths balance.
  const std::vector<int64_t> order = longest_first(lengths);
  if (T == 0) return new_output(dim, 0, at::kFloat);
  const bool whole_sequences = balanced(order, lengths, at::get_num_threads());
  if (!whole_sequences && split_tokens(T, at::get_num_threads())) {
    note_last_isa(k);
    at::Tensor out = new_output(dim, T, at::kFloat);
    thread_local TokenSplitEncoder encoder;
    int64_t bad_begin = 0, bad_end = 0;  // the tokens where it failed: a range's, or a sequence's
    const Failure f = encoder.run(k, layers, n_heads, float(scaling), int8_attention, h.data_ptr<float>(),
                                  out.data_ptr<float>(), T, lengths, first, &bad_begin, &bad_end);
    TORCH_CHECK(f.what == nullptr, op, ": ", failure_message(f, sequences_at(first, bad_begin, bad_end)));
    return out;
  }
  if (!whole_sequences)
    return activation_params.has_value()
               ? layer_by_layer_static(h, packed, norms, eps, lengths, n_heads, scaling, int8_attention, layers)
               : layer_by_layer(h, packed, norms, eps, lengths, n_heads, scaling, int8_attention);
  note_last_isa(k);
  at::Tensor out = new_output(dim, T, at::kFloat);
  std::atomic<int64_t> next{0};
  std::mutex failed;
  std::string error;
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    thread_local SequenceEncoder encoder;
    for (int64_t i = next++; i < int64_t(order.size()); i = next++) {
      const int64_t s = order[i];
      const Failure f = encoder.run(k, layers, n_heads, float(scaling), int8_attention, h.data_ptr<float>(),
                                    out.data_ptr<float>(), T, first[s], lengths[s]);
      if (f.what == nullptr) continue;
      std::lock_guard<std::mutex> lock(failed);
      if (error.empty()) error = failure_message(f, "sequence " + std::to_string(s));
    }
  });
  TORCH_CHECK(error.empty(), op, ": ", error);
  return out;
}

}  // namespace fastdistilbert
