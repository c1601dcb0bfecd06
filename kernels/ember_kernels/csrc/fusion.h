// The fusion MLP's forward and backward, written once over a backend's row-wise kernels.
//
// The matrix products go to ATen (MKL/oneDNN on CPU, cuBLAS on CUDA); a backend supplies
// the rest (LayerNorm over a row split into pieces, the activation with its dropout scale,
// and their backwards). The concatenation of the adapters' outputs is never built: the
// first unit's LayerNorm reads the pieces and computes its statistics over all of them,
// writing its normalized output (which the Linear after it needs whole) in one pass, and
// its backward hands each adapter its own piece. With no unit, the head Linear is a sum of
// per-piece products with column blocks of its weight,
//   concat(h_1..h_k) @ W^T == sum_i h_i @ W[:, cols_i]^T.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace ember {

using Tensors = std::vector<at::Tensor>;

struct LayerNormOut {
  at::Tensor y;  // (B, D): (x - mean) * rstd * gamma + beta, the pieces side by side
  at::Tensor mean;  // (B,)
  at::Tensor rstd;  // (B,)
};

struct LayerNormGrads {
  Tensors dx;  // per piece
  at::Tensor dgamma;  // (D,) over all pieces
  at::Tensor dbeta;  // (D,)
};

// What a backend supplies. Every input piece is a contiguous (B, w_j) tensor; gamma and
// beta pieces are contiguous (w_j,) slices of the norm's parameters; D = sum of w_j.
struct FusionKernels {
  LayerNormOut (*layer_norm)(const Tensors& pieces, const Tensors& gamma, const Tensors& beta, double eps);
  // x: the forward's input pieces (the normalized values are recomputed from them, as the
  // forward computed them, rather than stored).
  // dy: (B, D), contiguous.
  LayerNormGrads (*layer_norm_backward)(
      const at::Tensor& dy, const Tensors& x, const Tensors& gamma, const at::Tensor& mean, const at::Tensor& rstd);
  // leaky_relu(z, slope) * scale; an undefined scale means no dropout.
  at::Tensor (*activation)(const at::Tensor& z, const at::Tensor& scale, double slope);
  // d/dz of the above given d/d(output).
  at::Tensor (*activation_backward)(
      const at::Tensor& grad, const at::Tensor& z, const at::Tensor& scale, double slope);
};

// The schema's bool[] as a std::vector<bool>.
std::vector<bool> bool_vector(const c10::List<bool>& flags);

std::tuple<at::Tensor, Tensors> fusion_mlp_forward(
    const FusionKernels& kernels,
    const Tensors& features,
    const Tensors& adapter_weights,
    const Tensors& adapter_biases,
    const Tensors& norm_weights,
    const Tensors& norm_biases,
    const Tensors& fc_weights,
    const Tensors& fc_biases,
    const at::Tensor& head_weight,
    const at::Tensor& head_bias,
    const Tensors& dropout_scales,
    double eps,
    double negative_slope,
    bool save);

std::tuple<Tensors, Tensors, Tensors, Tensors, Tensors, Tensors, Tensors, at::Tensor, at::Tensor> fusion_mlp_backward(
    const FusionKernels& kernels,
    const at::Tensor& grad_out,
    const Tensors& features,
    const Tensors& adapter_weights,
    const Tensors& norm_weights,
    const Tensors& fc_weights,
    const at::Tensor& head_weight,
    const Tensors& dropout_scales,
    const Tensors& saved,
    double negative_slope,
    const std::vector<bool>& feature_grads);

}  // namespace ember
