// CPU collation: CSR token ids to padded text batches, uint8 NHWC images to normalized
// float NCHW batches. Both run parallel over the batch with at::parallel_for.
#include "collate.h"
#include "isa.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace ember {

void check_collate_text_args(
    const at::Tensor& ids_a,
    const at::Tensor& offsets_a,
    const std::optional<at::Tensor>& ids_b,
    const std::optional<at::Tensor>& offsets_b,
    const at::Tensor& rows,
    int64_t max_len,
    int64_t pad_multiple) {
  TORCH_CHECK(
      ids_b.has_value() == offsets_b.has_value(),
      "collate_text: a pair needs both ids_b and offsets_b (or neither for single texts)");
  const bool pair = ids_b.has_value();
  auto check_column = [&](const at::Tensor& ids, const at::Tensor& offsets, const char* name) {
    TORCH_CHECK(ids.dim() == 1 && ids.scalar_type() == at::kLong, "collate_text: ids_", name,
                " must be a 1-D int64 tensor, got ", ids.dim(), "-D ", ids.scalar_type());
    TORCH_CHECK(offsets.dim() == 1 && offsets.scalar_type() == at::kLong && offsets.numel() >= 1,
                "collate_text: offsets_", name, " must be a non-empty 1-D int64 tensor (n + 1 row starts)");
    TORCH_CHECK(ids.device() == rows.device() && offsets.device() == rows.device(),
                "collate_text: all tensors must be on one device (rows is on ", rows.device(), ")");
  };
  check_column(ids_a, offsets_a, "a");
  if (pair) {
    check_column(*ids_b, *offsets_b, "b");
    TORCH_CHECK(offsets_b->numel() == offsets_a.numel(),
                "collate_text: the pair's columns hold different numbers of rows (",
                offsets_a.numel() - 1, " and ", offsets_b->numel() - 1, ")");
  }
  TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == at::kLong, "collate_text: rows must be a 1-D int64 tensor");
  TORCH_CHECK(rows.numel() > 0, "collate_text: rows is empty; a batch needs at least one row");
  TORCH_CHECK(max_len >= (pair ? 3 : 2), "collate_text: max_len ", max_len, " leaves no room for the special tokens (at least ",
              pair ? 3 : 2, ")");
  TORCH_CHECK(pad_multiple >= 1, "collate_text: pad_multiple must be >= 1, got ", pad_multiple);
}

void check_collate_images_args(
    const at::Tensor& images,
    const at::Tensor& mean,
    const at::Tensor& std,
    const std::optional<at::Tensor>& flip) {
  TORCH_CHECK(images.dim() == 4 && images.scalar_type() == at::kByte,
              "collate_images: images must be uint8 (N, H, W, C), got ", images.dim(), "-D ", images.scalar_type());
  const int64_t c = images.size(3);
  for (const at::Tensor* t : {&mean, &std}) {
    TORCH_CHECK(t->dim() == 1 && t->numel() == c && t->scalar_type() == at::kFloat,
                "collate_images: mean and std must be float32 with one value per channel (", c, ")");
    TORCH_CHECK(t->device() == images.device(), "collate_images: mean and std must be on the images' device");
  }
  if (flip.has_value()) {
    TORCH_CHECK(flip->dim() == 1 && flip->numel() == images.size(0) && flip->scalar_type() == at::kBool,
                "collate_images: flip must be a bool tensor with one value per image");
    TORCH_CHECK(flip->device() == images.device(), "collate_images: flip must be on the images' device");
  }
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> collate_text_cpu(
    const at::Tensor& ids_a,
    const at::Tensor& offsets_a,
    const std::optional<at::Tensor>& ids_b,
    const std::optional<at::Tensor>& offsets_b,
    const at::Tensor& rows,
    int64_t cls_id,
    int64_t sep_id,
    int64_t pad_id,
    int64_t max_len,
    int64_t pad_multiple) {
  check_collate_text_args(ids_a, offsets_a, ids_b, offsets_b, rows, max_len, pad_multiple);
  const bool pair = ids_b.has_value();
  const at::Tensor ia = ids_a.contiguous(), oa = offsets_a.contiguous(), r = rows.contiguous();
  const at::Tensor ib = pair ? ids_b->contiguous() : at::Tensor();
  const at::Tensor ob = pair ? offsets_b->contiguous() : at::Tensor();
  const int64_t n = r.numel(), n_rows = oa.numel() - 1;
  const int64_t* row_p = r.const_data_ptr<int64_t>();
  const int64_t* oa_p = oa.const_data_ptr<int64_t>();
  const int64_t* ob_p = pair ? ob.const_data_ptr<int64_t>() : nullptr;

  // Pass 1 (serial, O(n)): validate the rows and their spans, truncate, find the longest.
  std::vector<int64_t> start_a(n), len_a(n), start_b(pair ? n : 0), len_b(pair ? n : 0);
  int64_t longest = 0;
  auto span = [&](const int64_t* off, int64_t numel, int64_t row, const char* name, int64_t* start) {
    const int64_t s = off[row], e = off[row + 1];
    TORCH_CHECK(0 <= s && s <= e && e <= numel, "collate_text: offsets_", name, " of row ", row,
                " point outside ids_", name, " (", s, ":", e, " of ", numel, ")");
    *start = s;
    return e - s;
  };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = row_p[i];
    TORCH_CHECK(0 <= row && row < n_rows, "collate_text: row index ", row, " is out of range for ", n_rows, " rows");
    int64_t la = span(oa_p, ia.numel(), row, "a", &start_a[i]);
    int64_t total;
    if (pair) {
      int64_t lb = span(ob_p, ib.numel(), row, "b", &start_b[i]);
      truncate_pair(la, lb, max_len - 3, &la, &lb);
      len_b[i] = lb;
      total = la + lb + 3;
    } else {
      la = std::min(la, max_len - 2);
      total = la + 2;
    }
    len_a[i] = la;
    longest = std::max(longest, total);
  }
  const int64_t width = padded_width(longest, max_len, pad_multiple);
  const auto opts = ia.options();
  at::Tensor input_ids = at::empty({n, width}, opts);
  at::Tensor mask = at::empty({n, width}, opts);
  at::Tensor types = at::empty({n, width}, opts);
  const int64_t* a_p = ia.const_data_ptr<int64_t>();
  const int64_t* b_p = pair ? ib.const_data_ptr<int64_t>() : nullptr;
  int64_t* ids_out = input_ids.mutable_data_ptr<int64_t>();
  int64_t* mask_out = mask.mutable_data_ptr<int64_t>();
  int64_t* types_out = types.mutable_data_ptr<int64_t>();

  // Pass 2 (parallel over rows): write each row. This is memcpy and fill work (a batch of
  // 256 x 64 tokens takes some 20 us on one core), so batches below ~128k tokens stay on
  // one thread: waking others would cost more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / std::max<int64_t>(width, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t* ids = ids_out + i * width;
      int64_t* m = mask_out + i * width;
      int64_t* t = types_out + i * width;
      const int64_t la = len_a[i];
      int64_t pos = 0;
      ids[pos++] = cls_id;
      std::memcpy(ids + pos, a_p + start_a[i], la * sizeof(int64_t));
      pos += la;
      ids[pos++] = sep_id;
      const int64_t first = pos;  // tokens of segment 0
      if (pair) {
        const int64_t lb = len_b[i];
        std::memcpy(ids + pos, b_p + start_b[i], lb * sizeof(int64_t));
        pos += lb;
        ids[pos++] = sep_id;
      }
      std::fill(ids + pos, ids + width, pad_id);
      std::fill(m, m + pos, int64_t{1});
      std::fill(m + pos, m + width, int64_t{0});
      std::fill(t, t + first, int64_t{0});
      std::fill(t + first, t + pos, int64_t{1});
      std::fill(t + pos, t + width, int64_t{0});
    }
  });
  return {input_ids, mask, types};
}

// One RGB row to its three planes; restrict parameters, so that it vectorizes.
EMBER_ALWAYS_INLINE void rgb_row(int64_t w, const uint8_t* __restrict__ row, const float* __restrict__ mean,
                                 const float* __restrict__ sd, float* __restrict__ d0, float* __restrict__ d1,
                                 float* __restrict__ d2) {
  const float m0 = mean[0], m1 = mean[1], m2 = mean[2], s0 = sd[0], s1 = sd[1], s2 = sd[2];
  for (int64_t x = 0; x < w; ++x) {
    d0[x] = (static_cast<float>(row[3 * x]) - m0) / s0;
    d1[x] = (static_cast<float>(row[3 * x + 1]) - m1) / s1;
    d2[x] = (static_cast<float>(row[3 * x + 2]) - m2) / s2;
  }
}

// Image rows [begin, end) of (n * h): each read once and written to its c planes, with the
// same arithmetic as (x.float() - mean) / std in float32 (bit-identical results).
EMBER_ISA_CLONES void image_rows(const uint8_t* in, const float* mean, const float* sd, const bool* flip, int64_t h,
                                 int64_t w, int64_t c, float* out, int64_t begin, int64_t end) {
  for (int64_t task = begin; task < end; ++task) {
    const int64_t i = task / h, y = task % h;
    const uint8_t* row = in + task * w * c;
    const bool mirror = flip != nullptr && flip[i];
    if (c == 3 && !mirror) {  // the common case
      float* plane = out + (i * 3 * h + y) * w;
      rgb_row(w, row, mean, sd, plane, plane + h * w, plane + 2 * h * w);
      continue;
    }
    for (int64_t ch = 0; ch < c; ++ch) {
      const float mu = mean[ch], s = sd[ch];
      float* dst = out + ((i * c + ch) * h + y) * w;
      const uint8_t* col = row + ch;
      if (mirror) {
        for (int64_t x = 0; x < w; ++x) dst[x] = (static_cast<float>(col[(w - 1 - x) * c]) - mu) / s;
      } else {
        for (int64_t x = 0; x < w; ++x) dst[x] = (static_cast<float>(col[x * c]) - mu) / s;
      }
    }
  }
}

at::Tensor collate_images_cpu(
    const at::Tensor& images,
    const at::Tensor& mean,
    const at::Tensor& std,
    const std::optional<at::Tensor>& flip) {
  check_collate_images_args(images, mean, std, flip);
  const at::Tensor src = images.contiguous();
  const at::Tensor m = mean.contiguous(), s = std.contiguous();
  const at::Tensor fl = flip.has_value() ? flip->contiguous() : at::Tensor();
  const int64_t n = src.size(0), h = src.size(1), w = src.size(2), c = src.size(3);
  at::Tensor out = at::empty({n, c, h, w}, images.options().dtype(at::kFloat));
  const uint8_t* in_p = src.const_data_ptr<uint8_t>();
  const float* m_p = m.const_data_ptr<float>();
  const float* s_p = s.const_data_ptr<float>();
  const bool* flip_p = flip.has_value() ? fl.const_data_ptr<bool>() : nullptr;
  float* out_p = out.mutable_data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(w * c, 1));
  at::parallel_for(0, n * h, grain, [&](int64_t begin, int64_t end) {
    image_rows(in_p, m_p, s_p, flip_p, h, w, c, out_p, begin, end);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ember, CPU, m) {
  m.impl("collate_text", &collate_text_cpu);
  m.impl("collate_images", &collate_images_cpu);
}

}  // namespace ember
