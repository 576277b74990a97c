// A fixture for the layering check, never compiled: the frozen model including a layer above it
// (its one allowed header from adapters/ is the hook interface).
#pragma once
#include <mmtune/adapters/adapter.h>
#include <mmtune/runtime/build_model.h>
