// The embeddings (word + position, then LayerNorm) of the packed tokens, written feature-major [dim, tokens] for
// the encoder. With torch ops this took a gather, an add and a LayerNorm, each a pass over [tokens, dim] in
// memory, then a transpose. Here each thread takes blocks of 16 tokens: it sums and normalizes each token's row in
// a small token-major scratch (48 KiB at dim 768, about an L1) with the active variant's embed_token
// (embed_token.inc), and transposes the block straight into the output, whose rows then get one whole cache line
// (16 floats) per block.
#include "embeddings_fm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <utility>

#include "dispatch.h"
#include "layer_norm_fm.h"
#include "panel_ops.h"
#include "transpose_fm.h"

namespace fastdistilbert {
namespace {

constexpr int64_t kEmbeddingBlock = 16;  // tokens per block: 16 floats, one cache line of each output row

// The index of the first entry of `index` [n] outside [0, limit), or -1.
int64_t first_out_of_range(const int64_t* index, int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; ++i)
    if (index[i] < 0 || index[i] >= limit) return i;
  return -1;
}

void check_index(const char* op, const char* name, const at::Tensor& index, int64_t T, int64_t limit,
                 const char* table) {
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 1 && index.is_contiguous(), op, ": ", name,
              " must be a contiguous int64 [tokens] tensor, got ", index.scalar_type(), " ", index.sizes());
  TORCH_CHECK(index.size(0) == T, op, ": ids has ", T, " tokens but ", name, " has ", index.size(0));
  const int64_t* p = index.data_ptr<int64_t>();
  const int64_t bad = first_out_of_range(p, T, limit);
  TORCH_CHECK(bad < 0, op, ": ", name, "[", bad, "] = ", bad < 0 ? 0 : p[bad], " is outside the ", limit, " rows of ",
              table);
}

}  // namespace

at::Tensor embeddings_fm(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& words,
                         const at::Tensor& places, const at::Tensor& gamma, const at::Tensor& beta, double eps) {
  const char* op = "embeddings_fm";
  for (const auto& [t, name] : {std::pair{&words, "words"}, std::pair{&places, "places"}})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->dim() == 2 && t->is_contiguous(), op, ": ", name,
                " must be a contiguous float32 [rows, dim] table, got ", t->scalar_type(), " ", t->sizes());
  const int64_t D = words.size(1);
  TORCH_CHECK(D > 0, op, ": the embedding tables have no features");
  TORCH_CHECK(places.size(1) == D, op, ": words has dim ", D, " but places has ", places.size(1));
  TORCH_CHECK(ids.dim() == 1, op, ": ids must be a 1-D [tokens] tensor, got shape ", ids.sizes());
  const int64_t T = ids.size(0);
  check_index(op, "ids", ids, T, words.size(0), "words");
  check_index(op, "positions", positions, T, places.size(0), "places");
  at::Tensor out = at::empty({D, T}, words.options());
  check_layer_norm_args(op, out, gamma, beta, eps);
  const int64_t *id = ids.data_ptr<int64_t>(), *pos = positions.data_ptr<int64_t>();
  const float *w = words.data_ptr<float>(), *p = places.data_ptr<float>();
  const float *g = gamma.data_ptr<float>(), *b = beta.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const KernelTable& k = active_kernels();
  at::parallel_for(0, (T + kEmbeddingBlock - 1) / kEmbeddingBlock, 1, [&](int64_t b0, int64_t b1) {
    thread_local AlignedVector<float> rows;  // [kEmbeddingBlock][D], kept between calls
    rows.resize(kEmbeddingBlock * D);
    for (int64_t block = b0; block < b1; ++block) {
      const int64_t t0 = block * kEmbeddingBlock, width = std::min(kEmbeddingBlock, T - t0);
      for (int64_t i = 0; i < width; ++i)
        k.embed_token(w + id[t0 + i] * D, p + pos[t0 + i] * D, D, g, b, eps, rows.data() + i * D);
      transpose_tile(rows.data(), D, width, D, o + t0, T);
    }
  });
  return out;
}

}  // namespace fastdistilbert
