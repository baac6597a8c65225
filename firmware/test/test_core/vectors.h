// Reads the tab-separated vector files in tests/vectors/ that the Rust tests read too.
#pragma once

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#ifndef VESPER_VECTORS_DIR
#error "VESPER_VECTORS_DIR must name the repository's tests/vectors folder"
#endif

namespace vectors {

// The rows of `name` (relative to tests/vectors), each split at tabs; comment lines dropped.
inline std::vector<std::vector<std::string>> rows(const std::string& name) {
    const std::string path = std::string(VESPER_VECTORS_DIR) + "/" + name;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::vector<std::vector<std::string>> out;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line[0] == '#') continue;
        std::vector<std::string> fields;
        std::string field;
        std::istringstream split(line);
        while (std::getline(split, field, '\t')) fields.push_back(field);
        if (!line.empty() && line.back() == '\t') fields.emplace_back();
        if (fields.empty()) fields.emplace_back();
        out.push_back(fields);
    }
    return out;
}

inline std::vector<unsigned char> bytes(const std::string& name) {
    const std::string path = std::string(VESPER_VECTORS_DIR) + "/" + name;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace vectors
