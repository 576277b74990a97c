// A fixture for the layering check (tests/CMakeLists.txt: layering_refuses_a_sideways_include), never
// compiled: the trainer including the evaluation layer beside it.
#include <mmtune/runtime/task.h>
#include <mmtune/eval/runner.h>
