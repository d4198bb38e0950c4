// reader.cpp: a C++17 reader of the fmagent shared-memory table, built with
// g++ and clang++ (-Wall -Wextra -Werror -pedantic) by `make test` and run
// against the Go writer (shmwriter -mode static). It checks that fmshm.h
// works from C++ as it does from C: every entity the writer put is read by
// name and has exactly the values of the test pattern
// (shmem/internal/testpattern, version 1), and a full scan finds them all.
//
//	reader SEGMENT N    (N: the writer's -n)
#include "../fmshm.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Segment owns an open reader: C++ code holds the C handle in RAII.
class Segment {
public:
	explicit Segment(const std::string &path)
	{
		int rc = fmshm_open(&r_, path.c_str());
		if (rc != FMSHM_OK)
			throw std::runtime_error(path + ": " + fmshm_strerror(rc));
	}
	~Segment() { fmshm_close(&r_); }
	Segment(const Segment &) = delete;
	Segment &operator=(const Segment &) = delete;

	fmshm_entity get(const std::string &name)
	{
		fmshm_entity e;
		int rc = fmshm_read_by_name_n(&r_, name.data(), name.size(), &e);
		if (rc != FMSHM_OK)
			throw std::runtime_error(name + ": " + fmshm_strerror(rc));
		return e;
	}

	std::map<std::string, fmshm_entity> all()
	{
		std::map<std::string, fmshm_entity> out;
		int rc = fmshm_foreach(
			&r_,
			[](const fmshm_entity *e, void *ctx) -> int {
				(*static_cast<std::map<std::string, fmshm_entity> *>(ctx))[std::string(e->name, e->name_len)] = *e;
				return 0;
			},
			&out);
		if (rc != FMSHM_OK)
			throw std::runtime_error(std::string("foreach: ") + fmshm_strerror(rc));
		return out;
	}

	fmshm_info info()
	{
		fmshm_info h;
		int rc = fmshm_header(&r_, &h);
		if (rc != FMSHM_OK)
			throw std::runtime_error(std::string("header: ") + fmshm_strerror(rc));
		return h;
	}

private:
	fmshm r_{};
};

int failures = 0;

template <typename A, typename B>
void expect(const std::string &what, A got, B want)
{
	if (static_cast<unsigned long long>(got) != static_cast<unsigned long long>(want)) {
		std::fprintf(stderr, "reader: %s: got %llu, want %llu\n", what.c_str(),
			     static_cast<unsigned long long>(got), static_cast<unsigned long long>(want));
		failures++;
	}
}

std::string pattern_name(int i)
{
	char b[32];
	std::snprintf(b, sizeof b, "ctest/%04d", i);
	return b;
}

// check compares e with version 1 of churned entity i (testpattern.fill).
void check(const fmshm_entity &e, const std::string &name, int i)
{
	const uint64_t v = 1;
	const uint64_t id = fmshm_xxh64(name.data(), name.size(), 0);
	expect(name + " id", e.id, id);
	expect(name + " kind", e.kind, 1 + i % 5);
	expect(name + " incarnation", e.incarnation, v);
	expect(name + " changed_seq", e.changed_seq, v ^ id);
	expect(name + " changed_at", e.changed_at, v * 1000003);
	// written_at (layout minor 1): the writer's clock when it wrote the row,
	// so within the last ten minutes and not in the future.
	timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	const int64_t now = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
	expect(name + " written_at recent", e.written_at > 0 && e.written_at <= now && now - e.written_at < 600000000000LL, true);
	expect(name + " owner", e.owner, static_cast<uint32_t>(v) ^ static_cast<uint32_t>(id));
	expect(name + " changed_by", e.changed_by, static_cast<uint32_t>(v >> 3) + 7);
	expect(name + " state", e.state, 1 + (v & 1));
	expect(name + " nalarms", e.nalarms, v % (FMSHM_MAX_ALARMS + 1));
	for (unsigned j = 0; j < e.nalarms; j++) {
		const fmshm_alarm &a = e.alarms[j];
		std::string w = name + " alarm " + std::to_string(j);
		expect(w + " severity", a.severity, 1 + (v + j) % 5);
		expect(w + " raised_by", a.raised_by, static_cast<uint32_t>(v) + j);
		expect(w + " cause_len", a.cause_len, 8 + (v + j) % 57);
		std::string cause(a.cause, a.cause_len);
		for (unsigned k = 0; k < cause.size(); k++)
			expect(w + " cause byte " + std::to_string(k), static_cast<unsigned char>(cause[k]), 'a' + (v + j + k) % 26);
		expect(w + " NUL", std::strlen(a.cause), a.cause_len);
	}
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 3) {
		std::fprintf(stderr, "usage: reader SEGMENT N\n");
		return 2;
	}
	const int n = std::atoi(argv[2]);
	try {
		Segment seg(argv[1]);
		fmshm_info h = seg.info();
		expect("header status", h.status, FMSHM_STATUS_READY);
		expect("header major", h.major, FMSHM_MAJOR);
		expect("header master", h.master, 1);
		std::vector<std::string> names;
		for (int i = 0; i < n; i++) {
			names.push_back(pattern_name(i));
			check(seg.get(names.back()), names.back(), i);
		}
		auto all = seg.all();
		for (int i = 0; i < n; i++) {
			auto it = all.find(names[i]);
			if (it == all.end()) {
				std::fprintf(stderr, "reader: %s: not found by fmshm_foreach\n", names[i].c_str());
				failures++;
				continue;
			}
			check(it->second, names[i], i);
		}
		expect("entities in the scan", all.size(), h.count);
		try {
			seg.get("ctest/none");
			std::fprintf(stderr, "reader: ctest/none: found\n");
			failures++;
		} catch (const std::runtime_error &) {
		}
		if (failures == 0)
			std::printf("C++ reader (%s, C++%ld): %d entities by name and %zu by scan, all as written\n",
#if defined(__clang__)
				    "clang++",
#else
				    "g++",
#endif
				    __cplusplus / 100 % 100, n, all.size());
	} catch (const std::exception &ex) {
		std::fprintf(stderr, "reader: %s\n", ex.what());
		return 1;
	}
	return failures == 0 ? 0 : 1;
}
