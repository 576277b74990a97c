// Referring-expression grounding (`mmtune eval --task grounding`; IAA spec §2.8), one JSON object
// a line:
//   {"id": "r1", "image": "coco/1.jpg", "expression": "the dog on the left", "box": [0.1, 0.2, 0.45, 0.9]}
// ("question" is accepted for "expression"). Boxes are [x1, y1, x2, y2] normalised to [0, 1]
// relative to the image padded to a square of side max(w, h) (the padding split evenly), as the
// model is asked to answer: "[x1, y1, x2, y2]", several boxes separated by "; ". A prediction is
// correct when any of its boxes has IoU >= 0.5 with the ground truth; an unparsable answer is wrong.
// The metric is precision@0.5 = correct / answered items (every item is answered). IoU is computed
// in the normalised square frame: mapping back to pixels (x = n * max(w, h) - border) scales and
// shifts both boxes alike, which leaves IoU unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mmtune::eval {

struct Box {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  bool operator==(const Box&) const = default;
};

/// Every "[a, b, c, d]" (four numbers, any spacing) in `text`, in order; malformed brackets are
/// skipped.
std::vector<Box> parse_boxes(std::string_view text);

/// Intersection over union; 0 for empty or inverted boxes.
double box_iou(const Box& a, const Box& b);

/// The box as the model writes it: "[0.12, 0.5, 0.9, 1.00]" with `decimals` digits.
std::string format_box(const Box& b, int decimals = 2);

struct GroundingItem {
  std::string id;
  std::string image;       // resolved path
  std::string expression;
  Box box;
};

/// Reads the JSONL file (layout above); `limit` > 0 keeps the first N. Throws DataError naming the
/// file and line: a missing image, expression or box, a box that is not four numbers in [0, 1]
/// with x1 <= x2 and y1 <= y2.
std::vector<GroundingItem> read_grounding_items(const std::string& path, const std::string& image_folder,
                                                int64_t limit);

/// The query sent to the model for `expression` (IAA's wording, spec §2.8).
std::string grounding_query(const std::string& expression);

}  // namespace mmtune::eval
