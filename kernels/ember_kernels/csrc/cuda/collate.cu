// CUDA collation: CSR token ids to padded text batches (one thread per output token),
// uint8 NHWC images to normalized float NCHW batches (one thread per output value).
// Launches go on the current stream. Kept off ATen/cuda/CUDAContext.h (see ENVIRONMENT.md).
#include "../collate.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace ember {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 16));
}

// Per batch row i, info holds (start_a, len_a, start_b, len_b, total) in rows 0..4 of a
// (5, n) array, lengths after truncation. total = -1 marks a row index out of range or a
// span outside its ids, reported by the host after.
__global__ void text_lengths_kernel(
    const int64_t* rows,
    int64_t n,
    int64_t n_rows,
    const int64_t* off_a,
    int64_t numel_a,
    const int64_t* off_b,
    int64_t numel_b,
    int64_t max_len,
    int64_t* info) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t row = rows[i];
  int64_t sa = 0, la = 0, sb = 0, lb = 0, total = -1;
  if (0 <= row && row < n_rows) {
    sa = off_a[row];
    const int64_t ea = off_a[row + 1];
    bool ok = 0 <= sa && sa <= ea && ea <= numel_a;
    la = ea - sa;
    if (off_b != nullptr) {
      sb = off_b[row];
      const int64_t eb = off_b[row + 1];
      ok = ok && 0 <= sb && sb <= eb && eb <= numel_b;
      lb = eb - sb;
      truncate_pair(la, lb, max_len - 3, &la, &lb);
      total = la + lb + 3;
    } else {
      la = la < max_len - 2 ? la : max_len - 2;
      total = la + 2;
    }
    if (!ok) total = -1;
  }
  info[i] = sa;
  info[n + i] = la;
  info[2 * n + i] = sb;
  info[3 * n + i] = lb;
  info[4 * n + i] = total;
}

__global__ void text_fill_kernel(
    const int64_t* info,
    int64_t n,
    int64_t width,
    const int64_t* ids_a,
    const int64_t* ids_b,
    int64_t cls_id,
    int64_t sep_id,
    int64_t pad_id,
    int64_t* out_ids,
    int64_t* out_mask,
    int64_t* out_types) {
  const int64_t count = n * width;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < count;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t i = idx / width, j = idx % width;
    const int64_t la = info[n + i], lb = info[3 * n + i], total = info[4 * n + i];
    int64_t id = pad_id, m = 0, t = 0;
    if (j < total) {
      m = 1;
      if (j == 0) {
        id = cls_id;
      } else if (j <= la) {
        id = ids_a[info[i] + j - 1];
      } else if (j == la + 1) {
        id = sep_id;
      } else {
        t = 1;
        id = j <= la + 1 + lb ? ids_b[info[2 * n + i] + j - la - 2] : sep_id;
      }
    }
    out_ids[idx] = id;
    out_mask[idx] = m;
    out_types[idx] = t;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> collate_text_cuda(
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
  const c10::cuda::CUDAGuard guard(rows.device());
  const bool pair = ids_b.has_value();
  const at::Tensor ia = ids_a.contiguous(), oa = offsets_a.contiguous(), r = rows.contiguous();
  const at::Tensor ib = pair ? ids_b->contiguous() : at::Tensor();
  const at::Tensor ob = pair ? offsets_b->contiguous() : at::Tensor();
  const int64_t n = r.numel();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor info = at::empty({5, n}, ia.options());
  text_lengths_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      r.const_data_ptr<int64_t>(), n, oa.numel() - 1, oa.const_data_ptr<int64_t>(), ia.numel(),
      pair ? ob.const_data_ptr<int64_t>() : nullptr, pair ? ib.numel() : 0, max_len, info.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // The width depends on the data: one device-to-host copy of (min, max) of the totals.
  const at::Tensor totals = info[4];
  const at::Tensor bounds = at::stack({totals.min(), totals.max()}).cpu();
  const int64_t lowest = bounds[0].item<int64_t>(), longest = bounds[1].item<int64_t>();
  TORCH_CHECK(lowest >= 0, "collate_text: a row index is out of range, or its offsets point outside the ids");
  const int64_t width = padded_width(longest, max_len, pad_multiple);
  at::Tensor input_ids = at::empty({n, width}, ia.options());
  at::Tensor mask = at::empty({n, width}, ia.options());
  at::Tensor types = at::empty({n, width}, ia.options());
  text_fill_kernel<<<blocks_for(n * width), kThreads, 0, stream>>>(
      info.const_data_ptr<int64_t>(), n, width, ia.const_data_ptr<int64_t>(),
      pair ? ib.const_data_ptr<int64_t>() : nullptr, cls_id, sep_id, pad_id, input_ids.mutable_data_ptr<int64_t>(),
      mask.mutable_data_ptr<int64_t>(), types.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {input_ids, mask, types};
}

__global__ void images_kernel(
    const uint8_t* in,
    const float* mean,
    const float* std,
    const bool* flip,
    int64_t n,
    int64_t c,
    int64_t h,
    int64_t w,
    float* out) {
  const int64_t count = n * c * h * w;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < count;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = idx % w;
    const int64_t y = (idx / w) % h;
    const int64_t ch = (idx / (w * h)) % c;
    const int64_t i = idx / (w * h * c);
    const int64_t sx = flip != nullptr && flip[i] ? w - 1 - x : x;
    // IEEE division (no fast math): bit-identical to (x.float() - mean) / std.
    out[idx] = (static_cast<float>(in[((i * h + y) * w + sx) * c + ch]) - mean[ch]) / std[ch];
  }
}

at::Tensor collate_images_cuda(
    const at::Tensor& images,
    const at::Tensor& mean,
    const at::Tensor& std,
    const std::optional<at::Tensor>& flip) {
  check_collate_images_args(images, mean, std, flip);
  const c10::cuda::CUDAGuard guard(images.device());
  const at::Tensor src = images.contiguous(), m = mean.contiguous(), s = std.contiguous();
  const at::Tensor fl = flip.has_value() ? flip->contiguous() : at::Tensor();
  const int64_t n = src.size(0), h = src.size(1), w = src.size(2), c = src.size(3);
  at::Tensor out = at::empty({n, c, h, w}, images.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  images_kernel<<<blocks_for(out.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      src.const_data_ptr<uint8_t>(), m.const_data_ptr<float>(), s.const_data_ptr<float>(),
      flip.has_value() ? fl.const_data_ptr<bool>() : nullptr, n, c, h, w, out.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ember, CUDA, m) {
  m.impl("collate_text", &collate_text_cuda);
  m.impl("collate_images", &collate_images_cuda);
}

}  // namespace ember
