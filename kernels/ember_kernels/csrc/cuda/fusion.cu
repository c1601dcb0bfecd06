// CUDA row-wise kernels of the fusion MLP (LayerNorm over a row split into pieces, the
// activation with its dropout scale, and their backwards), plugged into the shared
// forward/backward in fusion.cpp. One block per row for the norms; launches go on the
// current stream. Kept off ATen/cuda/CUDAContext.h (see ENVIRONMENT.md).
#include "../fusion.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace ember {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPieces = 8;  // modalities; Ember has at most four

// A row split into pieces. Forward: x pieces (B, w_j) in, y (B, D) out. Backward: dy
// (B, D) and x pieces in, dx pieces out.
template <typename T>
struct Pieces {
  const T* x[kMaxPieces];
  const T* gamma[kMaxPieces];
  const T* beta[kMaxPieces];
  T* dx[kMaxPieces];
  int64_t width[kMaxPieces];
  int n;
};

// (x - mean) * rstd, computed alike in the forward and the backward.
template <typename T>
__device__ __forceinline__ T normalized(T x, T mean, T rs) {
  using Acc = at::opmath_type<T>;
  return static_cast<T>((static_cast<Acc>(x) - static_cast<Acc>(mean)) * static_cast<Acc>(rs));
}

// Sum over the block, returned to every thread. `shared` holds one value per warp.
template <typename Acc>
__device__ Acc block_sum(Acc v, Acc* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // shared may still be read from a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : Acc(0);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  return shared[0];
}

template <typename T>
__global__ void layer_norm_kernel(Pieces<T> p, int64_t d, double eps, T* y, T* mean_out, T* rstd) {
  using Acc = at::opmath_type<T>;
  __shared__ Acc shared[32];
  const int64_t r = blockIdx.x;
  Acc s = 0;
  for (int j = 0; j < p.n; ++j) {
    const T* x = p.x[j] + r * p.width[j];
    for (int64_t c = threadIdx.x; c < p.width[j]; c += blockDim.x) s += static_cast<Acc>(x[c]);
  }
  const Acc mean = block_sum(s, shared) / d;
  Acc q = 0;
  for (int j = 0; j < p.n; ++j) {
    const T* x = p.x[j] + r * p.width[j];
    for (int64_t c = threadIdx.x; c < p.width[j]; c += blockDim.x) {
      const Acc v = static_cast<Acc>(x[c]) - mean;
      q += v * v;
    }
  }
  const T mean_t = static_cast<T>(mean);
  const T rs_t = static_cast<T>(Acc(1) / sqrt(block_sum(q, shared) / d + static_cast<Acc>(eps)));
  if (threadIdx.x == 0) {
    mean_out[r] = mean_t;
    rstd[r] = rs_t;
  }
  for (int j = 0, off = 0; j < p.n; off += p.width[j], ++j) {
    const int64_t w = p.width[j];
    const T* x = p.x[j] + r * w;
    for (int64_t c = threadIdx.x; c < w; c += blockDim.x) {
      y[r * d + off + c] = normalized(x[c], mean_t, rs_t) * p.gamma[j][c] + p.beta[j][c];
    }
  }
}

template <typename T>
__global__ void layer_norm_backward_kernel(Pieces<T> p, int64_t d, const T* dy, const T* mean, const T* rstd, T* xhat) {
  using Acc = at::opmath_type<T>;
  __shared__ Acc shared[32];
  const int64_t r = blockIdx.x;
  const T mu = mean[r], rs_t = rstd[r];
  Acc s1 = 0, s2 = 0;
  for (int j = 0, off = 0; j < p.n; off += p.width[j], ++j) {
    const int64_t w = p.width[j];
    for (int64_t c = threadIdx.x; c < w; c += blockDim.x) {
      const T xh = normalized(p.x[j][r * w + c], mu, rs_t);
      xhat[r * d + off + c] = xh;  // for dgamma, a column sum over rows done after
      const Acc g = static_cast<Acc>(dy[r * d + off + c]) * p.gamma[j][c];
      s1 += g;
      s2 += g * xh;
    }
  }
  const Acc c1 = block_sum(s1, shared) / d;
  const Acc c2 = block_sum(s2, shared) / d;
  const Acc rs = rs_t;
  for (int j = 0, off = 0; j < p.n; off += p.width[j], ++j) {
    const int64_t w = p.width[j];
    for (int64_t c = threadIdx.x; c < w; c += blockDim.x) {
      const Acc g = static_cast<Acc>(dy[r * d + off + c]) * p.gamma[j][c];
      p.dx[j][r * w + c] = static_cast<T>(rs * (g - c1 - static_cast<Acc>(xhat[r * d + off + c]) * c2));
    }
  }
}

template <typename T>
__global__ void activation_kernel(const T* z, const T* scale, T slope, int64_t n, T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const T v = z[i] > T(0) ? z[i] : z[i] * slope;
    out[i] = scale != nullptr ? v * scale[i] : v;
  }
}

template <typename T>
__global__ void activation_backward_kernel(const T* grad, const T* z, const T* scale, T slope, int64_t n, T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const T g = scale != nullptr ? grad[i] * scale[i] : grad[i];
    out[i] = z[i] > T(0) ? g : g * slope;
  }
}

int64_t blocks_for(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 16));
}

int64_t total_width(const Tensors& pieces) {
  TORCH_CHECK(pieces.size() <= static_cast<size_t>(kMaxPieces), "fusion_mlp (CUDA): at most ", kMaxPieces,
              " modalities, got ", pieces.size());
  int64_t d = 0;
  for (const auto& p : pieces) d += p.size(1);
  return d;
}

LayerNormOut layer_norm_cuda(const Tensors& pieces, const Tensors& gamma, const Tensors& beta, double eps) {
  const int64_t d = total_width(pieces), batch = pieces[0].size(0);
  LayerNormOut out;
  out.y = at::empty({batch, d}, pieces[0].options());
  out.mean = at::empty({batch}, pieces[0].options());
  out.rstd = at::empty({batch}, pieces[0].options());
  if (batch == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(pieces[0].scalar_type(), "ember_layer_norm_cuda", [&] {
    Pieces<scalar_t> p{};
    p.n = static_cast<int>(pieces.size());
    for (int j = 0; j < p.n; ++j) {
      p.x[j] = pieces[j].const_data_ptr<scalar_t>();
      p.gamma[j] = gamma[j].const_data_ptr<scalar_t>();
      p.beta[j] = beta[j].const_data_ptr<scalar_t>();
      p.width[j] = pieces[j].size(1);
    }
    layer_norm_kernel<scalar_t><<<batch, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        p, d, eps, out.y.mutable_data_ptr<scalar_t>(), out.mean.mutable_data_ptr<scalar_t>(),
        out.rstd.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

LayerNormGrads layer_norm_backward_cuda(
    const at::Tensor& dy, const Tensors& x, const Tensors& gamma, const at::Tensor& mean, const at::Tensor& rstd) {
  const int64_t d = total_width(x), batch = x[0].size(0);
  LayerNormGrads out;
  for (const auto& t : x) out.dx.push_back(at::empty_like(t, at::MemoryFormat::Contiguous));
  // The normalized input, (B, D): written by the kernel for dgamma's column sums below.
  at::Tensor xhat = at::empty({batch, d}, dy.options());
  if (batch > 0) {
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "ember_layer_norm_backward_cuda", [&] {
      Pieces<scalar_t> p{};
      p.n = static_cast<int>(x.size());
      for (int j = 0; j < p.n; ++j) {
        p.x[j] = x[j].const_data_ptr<scalar_t>();
        p.gamma[j] = gamma[j].const_data_ptr<scalar_t>();
        p.dx[j] = out.dx[j].mutable_data_ptr<scalar_t>();
        p.width[j] = x[j].size(1);
      }
      layer_norm_backward_kernel<scalar_t><<<batch, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          p, d, dy.const_data_ptr<scalar_t>(), mean.const_data_ptr<scalar_t>(), rstd.const_data_ptr<scalar_t>(),
          xhat.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  // The column sums over the batch are ATen reductions.
  out.dgamma = (dy * xhat).sum(0);
  out.dbeta = dy.sum(0);
  return out;
}

at::Tensor activation_cuda(const at::Tensor& z, const at::Tensor& scale, double slope) {
  at::Tensor out = at::empty_like(z);
  if (z.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ember_activation_cuda", [&] {
    activation_kernel<scalar_t><<<blocks_for(z.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        z.const_data_ptr<scalar_t>(), scale.defined() ? scale.const_data_ptr<scalar_t>() : nullptr,
        static_cast<scalar_t>(slope), z.numel(), out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor activation_backward_cuda(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& scale, double slope) {
  at::Tensor out = at::empty_like(z);
  if (z.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ember_activation_backward_cuda", [&] {
    activation_backward_kernel<scalar_t><<<blocks_for(z.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        grad.const_data_ptr<scalar_t>(), z.const_data_ptr<scalar_t>(),
        scale.defined() ? scale.const_data_ptr<scalar_t>() : nullptr, static_cast<scalar_t>(slope), z.numel(),
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

constexpr FusionKernels kCudaKernels{layer_norm_cuda, layer_norm_backward_cuda, activation_cuda, activation_backward_cuda};

std::tuple<at::Tensor, Tensors> fusion_mlp_cuda(
    at::TensorList features,
    at::TensorList adapter_weights,
    at::TensorList adapter_biases,
    at::TensorList norm_weights,
    at::TensorList norm_biases,
    at::TensorList fc_weights,
    at::TensorList fc_biases,
    const at::Tensor& head_weight,
    const at::Tensor& head_bias,
    at::TensorList dropout_scales,
    double eps,
    double negative_slope,
    bool save) {
  TORCH_CHECK(!features.empty(), "fusion_mlp: needs at least one feature tensor");
  const c10::cuda::CUDAGuard guard(features[0].device());
  return fusion_mlp_forward(kCudaKernels, features.vec(), adapter_weights.vec(), adapter_biases.vec(), norm_weights.vec(),
                            norm_biases.vec(), fc_weights.vec(), fc_biases.vec(), head_weight, head_bias,
                            dropout_scales.vec(), eps, negative_slope, save);
}

std::tuple<Tensors, Tensors, Tensors, Tensors, Tensors, Tensors, Tensors, at::Tensor, at::Tensor> fusion_mlp_backward_cuda(
    const at::Tensor& grad_out,
    at::TensorList features,
    at::TensorList adapter_weights,
    at::TensorList norm_weights,
    at::TensorList fc_weights,
    const at::Tensor& head_weight,
    at::TensorList dropout_scales,
    at::TensorList saved,
    double negative_slope,
    const c10::List<bool>& feature_grads) {
  const c10::cuda::CUDAGuard guard(grad_out.device());
  return fusion_mlp_backward(kCudaKernels, grad_out, features.vec(), adapter_weights.vec(), norm_weights.vec(),
                             fc_weights.vec(), head_weight, dropout_scales.vec(), saved.vec(), negative_slope,
                             bool_vector(feature_grads));
}

}  // namespace

TORCH_LIBRARY_IMPL(ember, CUDA, m) {
  m.impl("fusion_mlp", &fusion_mlp_cuda);
  m.impl("fusion_mlp_backward", &fusion_mlp_backward_cuda);
}

}  // namespace ember
