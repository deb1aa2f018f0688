/* test_util.c: SHA-256 vectors, RNG determinism and range, strbuf JSON, parsing. */
#include "mg_test.h"
#include "miagrid/util.h"

static void test_sha256(void)
{
    char hex[65];
    mg_sha256_hex("abc", 3, 32, hex);
    CHECK_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    mg_sha256_hex("", 0, 32, hex);
    CHECK_STR_EQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    mg_sha256_hex(m, strlen(m), 32, hex);
    CHECK_STR_EQ(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* Incremental updates across block boundaries give the same digest. */
    char big[1000];
    for (int i = 0; i < 1000; i++)
        big[i] = (char)(i * 7);
    uint8_t a[32], b[32];
    mg_sha256(big, sizeof big, a);
    mg_sha256_ctx c;
    mg_sha256_init(&c);
    for (int i = 0; i < 1000; i += 37)
        mg_sha256_update(&c, big + i, (size_t)(i + 37 <= 1000 ? 37 : 1000 - i));
    mg_sha256_final(&c, b);
    CHECK(memcmp(a, b, 32) == 0);
}

static void test_rng(void)
{
    mg_rng r1, r2, r3;
    mg_rng_seed(&r1, 7, "abc", "init");
    mg_rng_seed(&r2, 7, "abc", "init");
    mg_rng_seed(&r3, 7, "abc", "shuffle");
    int same = 1, diff = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = mg_rng_next(&r1), y = mg_rng_next(&r2), z = mg_rng_next(&r3);
        same &= x == y;
        diff += x != z;
    }
    CHECK(same);
    CHECK(diff > 95);
    double sum = 0, sq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = mg_rng_uniform(&r1);
        CHECK(u >= 0.0 && u < 1.0);
        double g = mg_rng_normal(&r1);
        sum += g;
        sq += g * g;
    }
    CHECK_NEAR(sum / n, 0.0, 0.02);
    CHECK_NEAR(sq / n, 1.0, 0.02);
    uint32_t idx[50];
    for (uint32_t i = 0; i < 50; i++)
        idx[i] = i;
    mg_rng_shuffle_u32(&r1, idx, 50);
    int seen[50] = {0};
    for (int i = 0; i < 50; i++)
        seen[idx[i]]++;
    int perm = 1;
    for (int i = 0; i < 50; i++)
        perm &= seen[i] == 1;
    CHECK(perm);
    for (int i = 0; i < 1000; i++)
        CHECK(mg_rng_below(&r1, 3) < 3);
}

static void test_strbuf(void)
{
    mg_strbuf b;
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "{");
    mg_strbuf_json_str(&b, "a\"b\\c\n");
    mg_strbuf_append(&b, ":");
    mg_strbuf_json_num(&b, 0.1);
    mg_strbuf_append(&b, ",");
    mg_strbuf_json_num(&b, 30);
    mg_strbuf_append(&b, ",");
    mg_strbuf_json_num(&b, 5e-4);
    mg_strbuf_append(&b, "}");
    char *s = mg_strbuf_take(&b);
    CHECK_STR_EQ(s, "{\"a\\\"b\\\\c\\u000a\":0.1,30,0.0005}");
    free(s);
}

static void test_parse(void)
{
    double d;
    long l;
    CHECK(mg_parse_double("0.25", &d) == 0 && d == 0.25);
    CHECK(mg_parse_double("1e-3", &d) == 0 && d == 1e-3);
    CHECK(mg_parse_double("0.25x", &d) == -1);
    CHECK(mg_parse_double("", &d) == -1);
    CHECK(mg_parse_double("nan", &d) == -1);
    CHECK(mg_parse_long("42", &l) == 0 && l == 42);
    CHECK(mg_parse_long("4.2", &l) == -1);
    CHECK(mg_parse_long("99999999999999999999999", &l) == -1);
}

static void test_error(void)
{
    mg_error e;
    mg_error_clear(&e);
    CHECK(mg_error_set(&e, MG_ERR_IO, "x.h5: %s", "gone") == MG_ERR_IO);
    mg_error_prefix(&e, "node %d: ", 3);
    CHECK_STR_EQ(e.msg, "node 3: x.h5: gone");
    CHECK(mg_calloc(SIZE_MAX / 2, 4, "huge", &e) == NULL);
    CHECK(e.status == MG_ERR_NOMEM);
}

int main(void)
{
    test_sha256();
    test_rng();
    test_strbuf();
    test_parse();
    test_error();
    MG_TEST_MAIN_END();
}
