// The fusion MLP's forward and backward (backend-independent orchestration) and their CPU
// row-wise kernels, parallel over the batch with at::parallel_for.
#include "fusion.h"
#include "isa.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace ember {

namespace {

// Widths (dim 1) of a list of (B, w) pieces.
std::vector<int64_t> widths_of(const Tensors& pieces) {
  std::vector<int64_t> w;
  w.reserve(pieces.size());
  for (const auto& p : pieces) w.push_back(p.size(1));
  return w;
}

// Contiguous slices of a (D,) parameter, one per piece.
Tensors split_vector(const at::Tensor& v, const std::vector<int64_t>& widths) {
  Tensors out;
  int64_t off = 0;
  for (int64_t w : widths) {
    out.push_back(v.narrow(0, off, w).contiguous());
    off += w;
  }
  return out;
}

// bias + concat(pieces) @ weight^T, without the concat.
at::Tensor linear_pieces(const Tensors& pieces, const at::Tensor& weight, const at::Tensor& bias) {
  at::Tensor out;
  int64_t off = 0;
  for (const auto& p : pieces) {
    const int64_t w = p.size(1);
    const at::Tensor block = weight.narrow(1, off, w).t();
    out = out.defined() ? out.addmm_(p, block) : at::addmm(bias, p, block);
    off += w;
  }
  return out;
}

// Backward of linear_pieces: fills grad_weight (column block by block) and returns the
// gradient of each piece. The bias gradient is grad.sum(0), left to the caller.
Tensors linear_pieces_backward(
    const at::Tensor& grad, const Tensors& pieces, const at::Tensor& weight, at::Tensor& grad_weight) {
  Tensors d;
  int64_t off = 0;
  const at::Tensor grad_t = grad.t();
  for (const auto& p : pieces) {
    const int64_t w = p.size(1);
    at::Tensor gw = grad_weight.narrow(1, off, w);
    at::mm_out(gw, grad_t, p);
    d.push_back(at::mm(grad, weight.narrow(1, off, w)));
    off += w;
  }
  return d;
}

void check_matrix(const at::Tensor& t, const at::Tensor& like, int64_t rows, int64_t cols, const char* what) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, "fusion_mlp: ", what, " must be (", rows, ", ",
              cols, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device() == like.device(), "fusion_mlp: ", what,
              " must match the features' dtype and device (", like.scalar_type(), " on ", like.device(), ")");
}

void check_vector(const at::Tensor& t, const at::Tensor& like, int64_t n, const char* what) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, "fusion_mlp: ", what, " must be (", n, ",), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device() == like.device(), "fusion_mlp: ", what,
              " must match the features' dtype and device");
}

// Shapes of every argument; returns the common adapter width.
int64_t check_fusion_args(
    const Tensors& features,
    const Tensors& adapter_weights,
    const Tensors& adapter_biases,
    const Tensors& norm_weights,
    const Tensors& norm_biases,
    const Tensors& fc_weights,
    const Tensors& fc_biases,
    const at::Tensor& head_weight,
    const at::Tensor& head_bias,
    const Tensors& dropout_scales) {
  const size_t k = features.size(), layers = fc_weights.size();
  TORCH_CHECK(k >= 1, "fusion_mlp: needs at least one feature tensor");
  TORCH_CHECK(adapter_weights.size() == k && adapter_biases.size() == k, "fusion_mlp: one adapter weight and bias per feature (",
              k, "), got ", adapter_weights.size(), " and ", adapter_biases.size());
  TORCH_CHECK(norm_weights.size() == layers && norm_biases.size() == layers && fc_biases.size() == layers,
              "fusion_mlp: each unit needs a norm weight, norm bias, fc weight and fc bias");
  TORCH_CHECK(dropout_scales.empty() || dropout_scales.size() == layers,
              "fusion_mlp: dropout_scales must be empty or hold one tensor per unit (", layers, ")");
  const at::Tensor& x0 = features[0];
  TORCH_CHECK(x0.dim() == 2, "fusion_mlp: features must be (batch, width), got ", x0.sizes());
  TORCH_CHECK(at::isFloatingType(x0.scalar_type()), "fusion_mlp: features must be floating point");
  const int64_t batch = x0.size(0), width = adapter_weights[0].size(0);
  for (size_t i = 0; i < k; ++i) {
    TORCH_CHECK(features[i].dim() == 2 && features[i].size(0) == batch, "fusion_mlp: feature ", i,
                " must be (", batch, ", f), got ", features[i].sizes());
    TORCH_CHECK(features[i].scalar_type() == x0.scalar_type() && features[i].device() == x0.device(),
                "fusion_mlp: all features must share one dtype and device");
    check_matrix(adapter_weights[i], x0, width, features[i].size(1), "adapter weight");
    check_vector(adapter_biases[i], x0, width, "adapter bias");
  }
  int64_t d = width * static_cast<int64_t>(k);
  for (size_t l = 0; l < layers; ++l) {
    check_vector(norm_weights[l], x0, d, "norm weight");
    check_vector(norm_biases[l], x0, d, "norm bias");
    const int64_t hidden = fc_weights[l].size(0);
    check_matrix(fc_weights[l], x0, hidden, d, "fc weight");
    check_vector(fc_biases[l], x0, hidden, "fc bias");
    if (!dropout_scales.empty()) check_matrix(dropout_scales[l], x0, batch, hidden, "dropout scale");
    d = hidden;
  }
  check_matrix(head_weight, x0, head_weight.size(0), d, "head weight");
  check_vector(head_bias, x0, head_weight.size(0), "head bias");
  return width;
}

}  // namespace

std::vector<bool> bool_vector(const c10::List<bool>& flags) {
  std::vector<bool> out;
  out.reserve(flags.size());
  for (bool f : flags) out.push_back(f);
  return out;
}

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
    bool save) {
  check_fusion_args(features, adapter_weights, adapter_biases, norm_weights, norm_biases, fc_weights, fc_biases,
                    head_weight, head_bias, dropout_scales);
  Tensors pieces;
  for (size_t i = 0; i < features.size(); ++i) {
    pieces.push_back(at::addmm(adapter_biases[i], features[i], adapter_weights[i].t()));
  }
  // saved: per unit [input pieces, y, mean, rstd, z], then the head's input. The
  // inputs are tensors the forward makes anyway (the adapters' outputs, the activations).
  Tensors saved;
  for (size_t l = 0; l < fc_weights.size(); ++l) {
    const auto widths = widths_of(pieces);
    LayerNormOut ln = kernels.layer_norm(pieces, split_vector(norm_weights[l], widths),
                                         split_vector(norm_biases[l], widths), eps);
    at::Tensor z = at::addmm(fc_biases[l], ln.y, fc_weights[l].t());
    at::Tensor scale = dropout_scales.empty() ? at::Tensor() : dropout_scales[l].contiguous();
    at::Tensor o = kernels.activation(z, scale, negative_slope);
    if (save) {
      saved.insert(saved.end(), pieces.begin(), pieces.end());
      saved.push_back(ln.y);
      saved.push_back(ln.mean);
      saved.push_back(ln.rstd);
      saved.push_back(z);
    }
    pieces = {o};
  }
  at::Tensor out = linear_pieces(pieces, head_weight, head_bias);
  if (save) saved.insert(saved.end(), pieces.begin(), pieces.end());
  return {out, saved};
}

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
    const std::vector<bool>& feature_grads) {
  const size_t k = features.size(), layers = fc_weights.size();
  TORCH_CHECK(feature_grads.size() == k, "fusion_mlp_backward: one feature_grads flag per feature");
  const size_t expected = layers == 0 ? k : (k + 4) + (layers - 1) * 5 + 1;
  TORCH_CHECK(saved.size() == expected, "fusion_mlp_backward: expected ", expected,
              " saved tensors (run fusion_mlp with save=True), got ", saved.size());
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(1) == head_weight.size(0),
              "fusion_mlp_backward: grad_out must be (batch, ", head_weight.size(0), ")");
  TORCH_CHECK(dropout_scales.empty() || dropout_scales.size() == layers,
              "fusion_mlp_backward: dropout_scales must be empty or hold one tensor per unit");
  const at::Tensor dout = grad_out.contiguous();

  // Head.
  const Tensors head_in = layers == 0 ? Tensors(saved.begin(), saved.begin() + k) : Tensors{saved.back()};
  at::Tensor d_head_w = at::empty_like(head_weight, at::MemoryFormat::Contiguous);
  at::Tensor d_head_b = dout.sum(0);
  Tensors d = linear_pieces_backward(dout, head_in, head_weight, d_head_w);

  // Units, last to first. Unit l's saved block starts at offset[l].
  std::vector<size_t> offset(layers);
  for (size_t l = 0, off = 0; l < layers; ++l) {
    offset[l] = off;
    off += l == 0 ? k + 4 : 5;
  }
  Tensors d_norm_w(layers), d_norm_b(layers), d_fc_w(layers), d_fc_b(layers);
  for (size_t l = layers; l-- > 0;) {
    const size_t p = l == 0 ? k : 1;  // pieces of this unit's input
    const auto at_ = saved.begin() + offset[l];
    const Tensors x(at_, at_ + p);
    const at::Tensor& y = *(at_ + p);
    const at::Tensor& mean = *(at_ + p + 1);
    const at::Tensor& rstd = *(at_ + p + 2);
    const at::Tensor& z = *(at_ + p + 3);
    const at::Tensor scale = dropout_scales.empty() ? at::Tensor() : dropout_scales[l].contiguous();
    const at::Tensor dz = kernels.activation_backward(d[0].contiguous(), z, scale, negative_slope);
    d_fc_b[l] = dz.sum(0);
    d_fc_w[l] = at::mm(dz.t(), y);
    const at::Tensor dy = at::mm(dz, fc_weights[l]);
    LayerNormGrads g = kernels.layer_norm_backward(dy, x, split_vector(norm_weights[l], widths_of(x)), mean, rstd);
    d_norm_w[l] = g.dgamma;
    d_norm_b[l] = g.dbeta;
    d = std::move(g.dx);
  }

  // Adapters.
  Tensors d_feat(k), d_adapter_w(k), d_adapter_b(k);
  for (size_t i = 0; i < k; ++i) {
    d_adapter_w[i] = at::mm(d[i].t(), features[i]);
    d_adapter_b[i] = d[i].sum(0);
    d_feat[i] = feature_grads[i] ? at::mm(d[i], adapter_weights[i]) : at::empty({0}, features[i].options());
  }
  return {d_feat, d_adapter_w, d_adapter_b, d_norm_w, d_norm_b, d_fc_w, d_fc_b, d_head_w, d_head_b};
}

namespace {

// ---- CPU row-wise kernels ---------------------------------------------------------------
// The float loops carry EMBER_ISA_CLONES (isa.h): AVX2 machines get 8-wide vectors. Sums
// use kLanes independent accumulators so that they vectorize without -ffast-math (one
// accumulator is a serial chain); the order of every sum is fixed: results are deterministic.
constexpr int kLanes = 8;

// The loops below take their arrays as __restrict__ parameters: GCC ignores restrict on
// local pointers, and without it, it will not vectorize loops that store to several arrays.
template <typename T>
EMBER_ALWAYS_INLINE at::opmath_type<T> row_sum(int64_t w, const T* __restrict__ x) {
  using Acc = at::opmath_type<T>;
  Acc acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= w; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += static_cast<Acc>(x[c + l]);
  }
  Acc s = 0;
  for (; c < w; ++c) s += static_cast<Acc>(x[c]);
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

template <typename T>
EMBER_ALWAYS_INLINE at::opmath_type<T> row_sq_dev(int64_t w, const T* __restrict__ x, at::opmath_type<T> mean) {
  using Acc = at::opmath_type<T>;
  Acc acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= w; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const Acc v = static_cast<Acc>(x[c + l]) - mean;
      acc[l] += v * v;
    }
  }
  Acc s = 0;
  for (; c < w; ++c) {
    const Acc v = static_cast<Acc>(x[c]) - mean;
    s += v * v;
  }
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// Rows per task: about 16k elements of work each.
int64_t row_grain(int64_t d) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1));
}

constexpr size_t kMaxPieces = 16;

// A row split into pieces: each piece is a (B, w_j) matrix with unit column stride and its
// own row stride (ld), so a piece can be a column block of a wider matrix.
template <typename T>
struct NormRows {
  const T* in[kMaxPieces];  // forward: x; backward: dy
  const T* aux[kMaxPieces];  // forward: beta (a vector); backward: x
  const T* gamma[kMaxPieces];
  T* out[kMaxPieces];  // forward: y; backward: dx
  int64_t in_ld[kMaxPieces], aux_ld[kMaxPieces], out_ld[kMaxPieces];
  int64_t width[kMaxPieces];
  int64_t col[kMaxPieces];  // first column of each piece in the whole row
  size_t k;
  int64_t d;
};

template <typename T>
NormRows<T> norm_rows(const Tensors& in, const Tensors& aux, const Tensors& gamma, const Tensors& out) {
  TORCH_CHECK(in.size() <= kMaxPieces, "fusion_mlp: at most ", kMaxPieces, " modalities, got ", in.size());
  NormRows<T> a{};
  a.k = in.size();
  for (size_t j = 0; j < a.k; ++j) {
    TORCH_INTERNAL_ASSERT(in[j].stride(1) == 1 && out[j].stride(1) == 1 && aux[j].stride(-1) == 1);
    a.in[j] = in[j].const_data_ptr<T>();
    a.aux[j] = aux[j].const_data_ptr<T>();
    a.gamma[j] = gamma[j].const_data_ptr<T>();
    a.out[j] = out[j].mutable_data_ptr<T>();
    a.in_ld[j] = in[j].stride(0);
    a.aux_ld[j] = aux[j].dim() == 2 ? aux[j].stride(0) : 0;
    a.out_ld[j] = out[j].stride(0);
    a.width[j] = in[j].size(1);
    a.col[j] = a.d;
    a.d += a.width[j];
  }
  return a;
}

// Column blocks of a (B, D) matrix, one per width.
Tensors column_blocks(const at::Tensor& m, const std::vector<int64_t>& widths) {
  Tensors out;
  int64_t off = 0;
  for (int64_t w : widths) {
    out.push_back(m.narrow(1, off, w));
    off += w;
  }
  return out;
}

// (x - mean) * rstd, computed alike in the forward and the backward.
template <typename T>
EMBER_ALWAYS_INLINE T normalized(T x, at::opmath_type<T> mean, at::opmath_type<T> rs) {
  return static_cast<T>((static_cast<at::opmath_type<T>>(x) - mean) * rs);
}

template <typename T>
EMBER_ALWAYS_INLINE void norm_write(int64_t w, const T* __restrict__ x, const T* __restrict__ g, const T* __restrict__ b,
                                    T mean, T rs, T* __restrict__ y) {
  for (int64_t c = 0; c < w; ++c) y[c] = normalized<T>(x[c], mean, rs) * g[c] + b[c];
}

// LayerNorm of rows [begin, end) over all pieces: y, mean and rstd.
template <typename T>
EMBER_ALWAYS_INLINE void norm_forward_rows(const NormRows<T>& a, T eps, T* mean_out, T* rstd, int64_t begin, int64_t end) {
  using Acc = at::opmath_type<T>;
  for (int64_t r = begin; r < end; ++r) {
    Acc sum = 0;
    for (size_t j = 0; j < a.k; ++j) sum += row_sum<T>(a.width[j], a.in[j] + r * a.in_ld[j]);
    const Acc mean = sum / a.d;
    Acc sq = 0;
    for (size_t j = 0; j < a.k; ++j) sq += row_sq_dev<T>(a.width[j], a.in[j] + r * a.in_ld[j], mean);
    // Stored rounded to T and used as stored, so that the backward recomputes the same
    // normalized values.
    const T mean_t = static_cast<T>(mean), rs_t = static_cast<T>(Acc(1) / std::sqrt(sq / a.d + static_cast<Acc>(eps)));
    mean_out[r] = mean_t;
    rstd[r] = rs_t;
    for (size_t j = 0; j < a.k; ++j) {
      norm_write<T>(a.width[j], a.in[j] + r * a.in_ld[j], a.gamma[j], a.aux[j], mean_t, rs_t, a.out[j] + r * a.out_ld[j]);
    }
  }
}

// sum(dy * g) and sum(dy * g * xhat) over one piece of a row.
template <typename T>
EMBER_ALWAYS_INLINE void norm_backward_sums(int64_t w, const T* __restrict__ dy, const T* __restrict__ x,
                                            const T* __restrict__ g, T mean, T rs, at::opmath_type<T>& s1,
                                            at::opmath_type<T>& s2) {
  using Acc = at::opmath_type<T>;
  Acc a1[kLanes] = {}, a2[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= w; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const Acc v = static_cast<Acc>(dy[c + l]) * g[c + l];
      a1[l] += v;
      a2[l] += v * normalized<T>(x[c + l], mean, rs);
    }
  }
  for (; c < w; ++c) {
    const Acc v = static_cast<Acc>(dy[c]) * g[c];
    s1 += v;
    s2 += v * normalized<T>(x[c], mean, rs);
  }
  for (int l = 0; l < kLanes; ++l) {
    s1 += a1[l];
    s2 += a2[l];
  }
}

// dx of one piece of a row, and its dgamma/dbeta terms added into ag/ab.
template <typename T>
EMBER_ALWAYS_INLINE void norm_backward_piece(int64_t w, const T* __restrict__ dy, const T* __restrict__ x,
                                             const T* __restrict__ g, T mean, T rs, at::opmath_type<T> c1,
                                             at::opmath_type<T> c2, T* __restrict__ dx, at::opmath_type<T>* __restrict__ ag,
                                             at::opmath_type<T>* __restrict__ ab) {
  using Acc = at::opmath_type<T>;
  for (int64_t c = 0; c < w; ++c) {
    const Acc dyc = dy[c], xc = normalized<T>(x[c], mean, rs);
    dx[c] = static_cast<T>(static_cast<Acc>(rs) * (dyc * g[c] - c1 - xc * c2));
    ag[c] += dyc * xc;
    ab[c] += dyc;
  }
}

// LayerNorm backward of rows [begin, end): dx, and dgamma/dbeta added into pg/pb (d each).
template <typename T>
EMBER_ALWAYS_INLINE void norm_backward_rows(const NormRows<T>& a, const T* mean, const T* rstd, at::opmath_type<T>* pg,
                                            at::opmath_type<T>* pb, int64_t begin, int64_t end) {
  using Acc = at::opmath_type<T>;
  for (int64_t r = begin; r < end; ++r) {
    const T mu = mean[r], rs = rstd[r];
    Acc s1 = 0, s2 = 0;
    for (size_t j = 0; j < a.k; ++j) {
      norm_backward_sums<T>(a.width[j], a.in[j] + r * a.in_ld[j], a.aux[j] + r * a.aux_ld[j], a.gamma[j], mu, rs, s1, s2);
    }
    const Acc c1 = s1 / a.d, c2 = s2 / a.d;
    for (size_t j = 0; j < a.k; ++j) {
      norm_backward_piece<T>(a.width[j], a.in[j] + r * a.in_ld[j], a.aux[j] + r * a.aux_ld[j], a.gamma[j], mu, rs, c1, c2,
                             a.out[j] + r * a.out_ld[j], pg + a.col[j], pb + a.col[j]);
    }
  }
}

// leaky_relu(z) * scale over [begin, end): the operations of leaky_relu then x * scale, in
// that order (bit-identical to them).
template <typename T>
EMBER_ALWAYS_INLINE void act_forward_range(const T* __restrict__ z, const T* __restrict__ scale, T neg, T* __restrict__ out,
                                           int64_t begin, int64_t end) {
  if (scale != nullptr) {
    for (int64_t i = begin; i < end; ++i) {
      const T v = z[i], m = v * neg;  // both sides computed: a select, not a branch
      out[i] = (v > T(0) ? v : m) * scale[i];
    }
  } else {
    for (int64_t i = begin; i < end; ++i) {
      const T v = z[i], m = v * neg;
      out[i] = v > T(0) ? v : m;
    }
  }
}

template <typename T>
EMBER_ALWAYS_INLINE void act_backward_range(const T* __restrict__ grad, const T* __restrict__ z, const T* __restrict__ scale,
                                            T neg, T* __restrict__ out, int64_t begin, int64_t end) {
  if (scale != nullptr) {
    for (int64_t i = begin; i < end; ++i) {
      const T g = grad[i] * scale[i], m = g * neg;
      out[i] = z[i] > T(0) ? g : m;
    }
  } else {
    for (int64_t i = begin; i < end; ++i) {
      const T g = grad[i], m = g * neg;
      out[i] = z[i] > T(0) ? g : m;
    }
  }
}

// Entry points: float goes through the ISA clones, other types through the plain template.
EMBER_ISA_CLONES void norm_forward(const NormRows<float>& a, float eps, float* mean, float* rstd, int64_t b, int64_t e) {
  norm_forward_rows<float>(a, eps, mean, rstd, b, e);
}
EMBER_ISA_CLONES void norm_backward(const NormRows<float>& a, const float* mean, const float* rstd, float* pg, float* pb,
                                    int64_t b, int64_t e) {
  norm_backward_rows<float>(a, mean, rstd, pg, pb, b, e);
}
EMBER_ISA_CLONES void act_forward(const float* z, const float* s, float neg, float* out, int64_t b, int64_t e) {
  act_forward_range<float>(z, s, neg, out, b, e);
}
EMBER_ISA_CLONES void act_backward(const float* g, const float* z, const float* s, float neg, float* out, int64_t b, int64_t e) {
  act_backward_range<float>(g, z, s, neg, out, b, e);
}
template <typename T>
void norm_forward(const NormRows<T>& a, T eps, T* mean, T* rstd, int64_t b, int64_t e) {
  norm_forward_rows<T>(a, eps, mean, rstd, b, e);
}
template <typename T>
void norm_backward(const NormRows<T>& a, const T* mean, const T* rstd, T* pg, T* pb, int64_t b, int64_t e) {
  norm_backward_rows<T>(a, mean, rstd, pg, pb, b, e);
}
template <typename T>
void act_forward(const T* z, const T* s, T neg, T* out, int64_t b, int64_t e) {
  act_forward_range<T>(z, s, neg, out, b, e);
}
template <typename T>
void act_backward(const T* g, const T* z, const T* s, T neg, T* out, int64_t b, int64_t e) {
  act_backward_range<T>(g, z, s, neg, out, b, e);
}

LayerNormOut layer_norm_cpu(const Tensors& pieces, const Tensors& gamma, const Tensors& beta, double eps) {
  RECORD_FUNCTION("ember::layer_norm_cpu", std::vector<c10::IValue>());
  const int64_t batch = pieces[0].size(0);
  const auto widths = widths_of(pieces);
  int64_t d = 0;
  for (int64_t w : widths) d += w;
  LayerNormOut out;
  out.y = at::empty({batch, d}, pieces[0].options());
  out.mean = at::empty({batch}, pieces[0].options());
  out.rstd = at::empty({batch}, pieces[0].options());
  AT_DISPATCH_FLOATING_TYPES(pieces[0].scalar_type(), "ember_layer_norm_cpu", [&] {
    const NormRows<scalar_t> a = norm_rows<scalar_t>(pieces, beta, gamma, column_blocks(out.y, widths));
    scalar_t* mean = out.mean.mutable_data_ptr<scalar_t>();
    scalar_t* rstd = out.rstd.mutable_data_ptr<scalar_t>();
    const auto e = static_cast<scalar_t>(eps);
    at::parallel_for(0, batch, row_grain(a.d), [&](int64_t begin, int64_t end) {
      norm_forward(a, e, mean, rstd, begin, end);
    });
  });
  return out;
}

LayerNormGrads layer_norm_backward_cpu(
    const at::Tensor& dy_all, const Tensors& x, const Tensors& gamma, const at::Tensor& mean, const at::Tensor& rstd) {
  RECORD_FUNCTION("ember::layer_norm_backward_cpu", std::vector<c10::IValue>());
  const int64_t batch = x[0].size(0);
  const Tensors dy = column_blocks(dy_all, widths_of(x));
  LayerNormGrads out;
  for (const auto& t : x) out.dx.push_back(at::empty_like(t, at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES(dy[0].scalar_type(), "ember_layer_norm_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const NormRows<scalar_t> a = norm_rows<scalar_t>(dy, x, gamma, out.dx);
    const int64_t d = a.d;
    out.dgamma = at::empty({d}, dy[0].options());
    out.dbeta = at::empty({d}, dy[0].options());
    const scalar_t* mu = mean.const_data_ptr<scalar_t>();
    const scalar_t* rs = rstd.const_data_ptr<scalar_t>();
    // dgamma and dbeta: one partial sum per thread, accumulated while each row is in
    // cache, added up after.
    const int threads = at::get_num_threads();
    std::vector<acc_t> partial(static_cast<size_t>(threads) * 2 * d, acc_t(0));
    at::parallel_for(0, batch, row_grain(d), [&](int64_t begin, int64_t end) {
      const int tid = at::get_thread_num();
      TORCH_INTERNAL_ASSERT(0 <= tid && tid < threads, "thread ", tid, " of ", threads);
      acc_t* pg = partial.data() + static_cast<size_t>(tid) * 2 * d;
      norm_backward(a, mu, rs, pg, pg + d, begin, end);
    });
    scalar_t* dg = out.dgamma.mutable_data_ptr<scalar_t>();
    scalar_t* db = out.dbeta.mutable_data_ptr<scalar_t>();
    for (int64_t c = 0; c < d; ++c) {
      acc_t sg = 0, sb = 0;
      for (int t = 0; t < threads; ++t) {
        sg += partial[static_cast<size_t>(t) * 2 * d + c];
        sb += partial[static_cast<size_t>(t) * 2 * d + d + c];
      }
      dg[c] = static_cast<scalar_t>(sg);
      db[c] = static_cast<scalar_t>(sb);
    }
  });
  return out;
}

at::Tensor activation_cpu(const at::Tensor& z, const at::Tensor& scale, double slope) {
  RECORD_FUNCTION("ember::activation_cpu", std::vector<c10::IValue>());
  at::Tensor out = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ember_activation_cpu", [&] {
    const scalar_t* zp = z.const_data_ptr<scalar_t>();
    const scalar_t* sp = scale.defined() ? scale.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const auto neg = static_cast<scalar_t>(slope);
    at::parallel_for(0, z.numel(), 32768, [&](int64_t begin, int64_t end) {
      act_forward(zp, sp, neg, op, begin, end);
    });
  });
  return out;
}

at::Tensor activation_backward_cpu(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& scale, double slope) {
  RECORD_FUNCTION("ember::activation_backward_cpu", std::vector<c10::IValue>());
  at::Tensor out = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ember_activation_backward_cpu", [&] {
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    const scalar_t* zp = z.const_data_ptr<scalar_t>();
    const scalar_t* sp = scale.defined() ? scale.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const auto neg = static_cast<scalar_t>(slope);
    at::parallel_for(0, z.numel(), 32768, [&](int64_t begin, int64_t end) {
      act_backward(gp, zp, sp, neg, op, begin, end);
    });
  });
  return out;
}

constexpr FusionKernels kCpuKernels{layer_norm_cpu, layer_norm_backward_cpu, activation_cpu, activation_backward_cpu};

std::tuple<at::Tensor, Tensors> fusion_mlp_cpu(
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
  return fusion_mlp_forward(kCpuKernels, features.vec(), adapter_weights.vec(), adapter_biases.vec(), norm_weights.vec(),
                            norm_biases.vec(), fc_weights.vec(), fc_biases.vec(), head_weight, head_bias,
                            dropout_scales.vec(), eps, negative_slope, save);
}

std::tuple<Tensors, Tensors, Tensors, Tensors, Tensors, Tensors, Tensors, at::Tensor, at::Tensor> fusion_mlp_backward_cpu(
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
  return fusion_mlp_backward(kCpuKernels, grad_out, features.vec(), adapter_weights.vec(), norm_weights.vec(),
                             fc_weights.vec(), head_weight, dropout_scales.vec(), saved.vec(), negative_slope,
                             bool_vector(feature_grads));
}

}  // namespace

TORCH_LIBRARY_IMPL(ember, CPU, m) {
  m.impl("fusion_mlp", &fusion_mlp_cpu);
  m.impl("fusion_mlp_backward", &fusion_mlp_backward_cpu);
}

}  // namespace ember
