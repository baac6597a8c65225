#include "doctest_compat.h"

#include <algorithm>
#include <string>
#include <vector>

#include "sha256.h"

using namespace vesper;

namespace {
std::string hex_of(const std::string& s) {
    Sha256 h;
    h.update(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
    return h.finish_hex();
}
}  // namespace

// FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf").
TEST_CASE("sha256: NIST vectors") {
    CHECK(hex_of("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hex_of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hex_of(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    CHECK(hex_of(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST_CASE("sha256: a million a's streamed in uneven pieces") {
    Sha256 h;
    const std::vector<std::uint8_t> chunk(997, 'a');
    std::size_t left = 1000000;
    std::size_t step = 1;
    while (left > 0) {
        const std::size_t n = std::min({left, step, chunk.size()});
        h.update(chunk.data(), n);
        left -= n;
        step = step * 3 % 1000 + 1;
    }
    CHECK(h.finish_hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
