# The layering rule, checked on every build: a file in src/<dir>/ or include/mmtune/<dir>/ may
# include mmtune headers only from the folders of its own library and of the libraries that library
# links (transitively), plus single headers a layer names (HEADERS). The link graph of src/CMakeLists.txt
# is the one place the layers are written down; this turns it into rules for the include scan
# (check_layers.cmake), which runs before any library compiles, so a sideways or upward include fails
# the build with the file and the include named.
#
#   mmtune_record_layer(<target> DIRS <dir>... [HEADERS <dir/file.h>...] [LINKS <target>...])
#   mmtune_write_layer_rules()   after the last layer: writes ${PROJECT_BINARY_DIR}/layers.txt
#
# The target mmtune_check_layers runs the scan; ctest runs it too (tests/CMakeLists.txt: once on
# the tree, once on a tree with a sideways include, which must fail).

set(MMTUNE_CHECK_LAYERS_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_layers.cmake)
set(MMTUNE_LAYER_RULES_FILE ${PROJECT_BINARY_DIR}/layers.txt)

function(mmtune_record_layer target)
  cmake_parse_arguments(L "" "" "DIRS;HEADERS;LINKS" ${ARGN})
  set_property(GLOBAL APPEND PROPERTY MMTUNE_LAYERS ${target})
  set_property(GLOBAL PROPERTY MMTUNE_LAYER_${target}_DIRS ${L_DIRS})
  set_property(GLOBAL PROPERTY MMTUNE_LAYER_${target}_HEADERS ${L_HEADERS})
  set(links)
  foreach(l ${L_LINKS})
    if(l MATCHES "^mmtune_")
      list(APPEND links ${l})
    endif()
  endforeach()
  set_property(GLOBAL PROPERTY MMTUNE_LAYER_${target}_LINKS ${links})
endfunction()

# The folders of `target` and of everything it links, transitively, into <out>.
function(_mmtune_layer_closure target out)
  get_property(dirs GLOBAL PROPERTY MMTUNE_LAYER_${target}_DIRS)
  get_property(links GLOBAL PROPERTY MMTUNE_LAYER_${target}_LINKS)
  foreach(l ${links})
    _mmtune_layer_closure(${l} sub)
    list(APPEND dirs ${sub})
  endforeach()
  list(REMOVE_DUPLICATES dirs)
  set(${out} ${dirs} PARENT_SCOPE)
endfunction()

function(mmtune_write_layer_rules)
  get_property(layers GLOBAL PROPERTY MMTUNE_LAYERS)
  set(text "")
  foreach(t ${layers})
    get_property(own GLOBAL PROPERTY MMTUNE_LAYER_${t}_DIRS)
    get_property(headers GLOBAL PROPERTY MMTUNE_LAYER_${t}_HEADERS)
    _mmtune_layer_closure(${t} allowed)
    list(SORT allowed)
    string(REPLACE ";" "," allowed "${allowed}")
    string(REPLACE ";" "," headers "${headers}")
    foreach(d ${own})
      # one line per folder: <folder> <library> <allowed folders> <allowed single headers>
      string(APPEND text "${d} ${t} ${allowed} ${headers}\n")
    endforeach()
  endforeach()
  file(WRITE ${MMTUNE_LAYER_RULES_FILE} "${text}")
  add_custom_target(mmtune_check_layers ALL
    COMMAND ${CMAKE_COMMAND} -DRULES=${MMTUNE_LAYER_RULES_FILE} -DROOT=${PROJECT_SOURCE_DIR}
            -P ${MMTUNE_CHECK_LAYERS_SCRIPT}
    COMMENT "Checking that every include goes down the layers (docs/ARCHITECTURE.md)"
    VERBATIM)
endfunction()
