// Shared by the CPU (collate.cpp) and CUDA (cuda/collate.cu) collation ops: argument checks
// and the small pieces of arithmetic both must do identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <optional>

namespace ember {

// Longest-first truncation as Hugging Face tokenizers do it: the shorter side keeps up to
// half the budget (the first side on ties), the longer side gets the rest.
C10_HOST_DEVICE inline void truncate_pair(int64_t la, int64_t lb, int64_t budget, int64_t* na, int64_t* nb) {
  if (la + lb <= budget) {
    *na = la;
    *nb = lb;
  } else if (la <= lb) {
    *na = la < budget / 2 ? la : budget / 2;
    *nb = lb < budget - *na ? lb : budget - *na;
  } else {
    *nb = lb < budget / 2 ? lb : budget / 2;
    *na = la < budget - *nb ? la : budget - *nb;
  }
}

// The batch's width: its longest row rounded up to `multiple`, at most `max_len`.
C10_HOST_DEVICE inline int64_t padded_width(int64_t longest, int64_t max_len, int64_t multiple) {
  const int64_t rounded = (longest + multiple - 1) / multiple * multiple;
  return rounded < max_len ? rounded : max_len;
}

// Dtypes, ranks, devices and scalar ranges of collate_text's arguments (not the data).
void check_collate_text_args(
    const at::Tensor& ids_a,
    const at::Tensor& offsets_a,
    const std::optional<at::Tensor>& ids_b,
    const std::optional<at::Tensor>& offsets_b,
    const at::Tensor& rows,
    int64_t max_len,
    int64_t pad_multiple);

// Dtypes, ranks and shapes of collate_images's arguments.
void check_collate_images_args(
    const at::Tensor& images,
    const at::Tensor& mean,
    const at::Tensor& std,
    const std::optional<at::Tensor>& flip);

}  // namespace ember
