// catalog::parse() where the JSON parser is not compiled in: the single header without
// SHMETRICS_CATALOG_JSON (the parser needs simdjson). load() still opens the file, so a
// wrong path is reported as such; a readable file gets this error.
#include <shmetrics/catalog/catalog.hpp>

SHMETRICS_BEGIN_NAMESPACE

result<catalog> catalog::parse(std::string_view, std::string_view origin) {
  return error{errc::invalid_options, 0,
               "catalog " + std::string(origin) +
                   ": this build has no JSON loader (define SHMETRICS_CATALOG_JSON before "
                   "including shmetrics/catalog.hpp with SHMETRICS_CATALOG_IMPLEMENTATION, and "
                   "link simdjson), or use catalog::builtin()"};
}

SHMETRICS_END_NAMESPACE
