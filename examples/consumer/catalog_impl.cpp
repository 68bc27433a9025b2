// The catalog's implementation, compiled once: the one file that defines
// SHMETRICS_CATALOG_IMPLEMENTATION before including the single header (stb style). With
// SHMETRICS_CATALOG_JSON defined as well (build flag -DSHMETRICS_CATALOG_JSON and
// -lsimdjson), catalog::load() reads a newer catalog JSON file at run time.
#define SHMETRICS_CATALOG_IMPLEMENTATION
#include <shmetrics/catalog.hpp>
