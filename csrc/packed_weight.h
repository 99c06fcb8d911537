// The packed weight buffer: header layout and validation (the writer is
// fastdistilbert/reference_ops.py::pack_weight; both follow this description).
//
// 128-byte little-endian header, then sections at the offsets it records (each 64-byte aligned):
//   0 char magic[8] = "FDBWPACK"   8 u32 version = 1   12 u32 pattern (0 dense, 1 4x1, 2 1x4)
//  16 i64 N   24 i64 K   32 i64 nnz_blocks (nonzero blocks of the pattern; dense: stored 4x4 tiles)
//  40 i64 n_stored (weight dwords stored)   48 i64 flags (bit 0: has bias; bit 1: has AMX tiles)   56 i64 total_bytes
//  64 i64 off_scale (f32[Np])   72 off_bias (f32[Np])   80 off_wsum (i32[Np])
//  88 off_ptr (i32[Np/4+1] for 4x1, i32[Np+1] for 1x4, 0 for dense)   96 off_idx (i32[n_stored])
// 104 off_w (dense: i8[Np*Kp]; sparse: i32[n_stored])
// 112 off_amx_tiles (dense only, with flags bit 1, else 0): i8[ceil(Np / 32)][K64 / 64][32 rows][64], K64 = Kp / 64
//     * 64 > 0: the weight's first K64 features in the AMX tiles' blocks (kernels.h, kAmxBlockRows; rows past N zero)
// 120 u32 reserved (0)   124 u32 checksum: FNV-1a 32 of bytes 0..123.
#pragma once
#include <ATen/ATen.h>

#include "kernels.h"

namespace fastdistilbert {

constexpr int64_t kPackedHeaderBytes = 128;
constexpr uint32_t kPackedVersion = 1;
constexpr int64_t kFlagAmxTiles = 2;

// Validates `packed` (header, checksum, section bounds, sparse indices) and fills the weight part
// of GemmParams. Throws a c10::Error naming the problem.
void parse_packed_weight(const at::Tensor& packed, GemmParams& p, const char* op);

}  // namespace fastdistilbert
