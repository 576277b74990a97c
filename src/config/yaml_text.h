// Private to src/config: YAML text of typed values, shared by the writer and the key lister.
#pragma once

#include <string>

#include <mmtune/config/schema.h>

namespace mmtune::config::detail {

/// The value of a field as flow-style YAML text ("1e-4", "[0.9, 0.95]", "~", "'text'").
std::string value_text(const FieldRef& ref);
/// "bool", "int", "float or null", "list of string", ...
std::string type_name(const FieldRef& ref);

}  // namespace mmtune::config::detail
