// The `ember` operator library: every schema is declared here, once. Each backend registers
// its implementations with TORCH_LIBRARY_IMPL in its own file (collate.cpp and fusion.cpp for
// CPU, cuda/*.cu for CUDA). Python reaches the ops through torch.ops.ember.*; the module
// below exists only so that `import ember_kernels._C` loads this library.
#include <Python.h>

#include <torch/library.h>

TORCH_LIBRARY(ember, m) {
  // Pre-tokenized CSR text (ids without special tokens, offsets of n+1 rows) to a padded
  // batch: [CLS] a [SEP] for one column, [CLS] a [SEP] b [SEP] for a pair (longest-first
  // truncation to max_len), padded to the batch's longest rounded up to pad_multiple (at
  // most max_len). Returns input_ids, attention_mask, token_type_ids (int64, n x width).
  m.def(
      "collate_text(Tensor ids_a, Tensor offsets_a, Tensor? ids_b, Tensor? offsets_b, Tensor rows, "
      "int cls_id, int sep_id, int pad_id, int max_len, int pad_multiple) -> (Tensor, Tensor, Tensor)");
  // uint8 NHWC images to float32 NCHW, (x - mean[c]) / std[c]; rows with flip[i] are
  // mirrored horizontally on the way.
  m.def("collate_images(Tensor images, Tensor mean, Tensor std, Tensor? flip) -> Tensor");
  // The fusion MLP: per-modality adapters (Linear to a common width), their concatenation,
  // len(fc_weights) units of LayerNorm -> Linear -> LeakyReLU -> (x * dropout_scale), then
  // the head Linear. The concatenation is never materialized: LayerNorm statistics and the
  // first Linear are computed piece by piece. dropout_scales is empty (no dropout) or holds
  // one (batch, hidden) tensor per unit. With save, the second output holds what the
  // backward needs; without it, it is empty.
  m.def(
      "fusion_mlp(Tensor[] features, Tensor[] adapter_weights, Tensor[] adapter_biases, "
      "Tensor[] norm_weights, Tensor[] norm_biases, Tensor[] fc_weights, Tensor[] fc_biases, "
      "Tensor head_weight, Tensor head_bias, Tensor[] dropout_scales, float eps, float negative_slope, "
      "bool save) -> (Tensor, Tensor[])");
  // Gradients of fusion_mlp, in the order of its differentiable inputs: features,
  // adapter weights and biases, norm weights and biases, fc weights and biases, head weight
  // and bias. Features with feature_grads[i] false get an empty tensor instead.
  m.def(
      "fusion_mlp_backward(Tensor grad_out, Tensor[] features, Tensor[] adapter_weights, "
      "Tensor[] norm_weights, Tensor[] fc_weights, Tensor head_weight, Tensor[] dropout_scales, "
      "Tensor[] saved, float negative_slope, bool[] feature_grads) -> "
      "(Tensor[], Tensor[], Tensor[], Tensor[], Tensor[], Tensor[], Tensor[], Tensor, Tensor)");
}

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "Registers the torch.ops.ember operators.",  // doc
      -1,  // size of per-interpreter state
      nullptr,  // methods
  };
  return PyModule_Create(&module_def);
}
}
