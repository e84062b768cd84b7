// The daemon's workers off the event loop: notify hooks run real scripts with the event in
// their environment, in order, with a time limit; the state saver writes the latest contents.

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/notify_hooks.h"
#include "cli/state_saver.h"

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/shoal-hooks-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};

std::string writeScript(const std::string& dir, const std::string& name, const std::string& body) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  ::chmod(path.c_str(), 0700);
  return path;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("hooks see the event's variables, in the order events were posted") {
  TempDir dir;
  const std::string out = dir.path + "/out";
  const auto script = writeScript(dir.path, "hook.sh",
                                  "echo \"$SHOAL_EVENT $SHOAL_NODE $SHOAL_BUCKETS\" >> " + out);
  shoal::daemon::HookRunner runner({script}, std::chrono::milliseconds(5000));
  runner.post(
      {{{"SHOAL_EVENT", "bucket-gained"}, {"SHOAL_NODE", "alpha"}, {"SHOAL_BUCKETS", "1,2"}}});
  runner.post({{{"SHOAL_EVENT", "node-state"}, {"SHOAL_NODE", "beta"}}});
  runner.drain(std::chrono::milliseconds(10000));
  CHECK(slurp(out) == "bucket-gained alpha 1,2\nnode-state beta \n");
  CHECK(runner.failed() == 0);
}

TEST_CASE("replaced scripts (a reload) run for the events posted after, also from none") {
  TempDir dir;
  const std::string out = dir.path + "/out";
  const auto first = writeScript(dir.path, "first.sh", "echo \"first $SHOAL_NODE\" >> " + out);
  const auto second = writeScript(dir.path, "second.sh", "echo \"second $SHOAL_NODE\" >> " + out);
  shoal::daemon::HookRunner runner({}, std::chrono::milliseconds(5000));
  runner.post({{{"SHOAL_NODE", "a"}}});  // no scripts yet: nothing runs
  runner.setScripts({first});
  runner.post({{{"SHOAL_NODE", "b"}}});
  runner.drain(std::chrono::milliseconds(10000));
  runner.setScripts({second, first});
  runner.post({{{"SHOAL_NODE", "c"}}});
  runner.drain(std::chrono::milliseconds(10000));
  runner.setScripts({});
  runner.post({{{"SHOAL_NODE", "d"}}});
  runner.drain(std::chrono::milliseconds(10000));
  CHECK(slurp(out) == "first b\nsecond c\nfirst c\n");
  CHECK(runner.failed() == 0);
}

TEST_CASE("a failing hook and a hung hook are counted, and the hung one is killed") {
  TempDir dir;
  const auto failing = writeScript(dir.path, "fail.sh", "exit 3");
  const auto hung = writeScript(dir.path, "hang.sh", "sleep 30");
  shoal::daemon::HookRunner runner({failing, hung}, std::chrono::milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  runner.post({{{"SHOAL_EVENT", "quorum"}}});
  runner.drain(std::chrono::milliseconds(10000));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  CHECK(runner.failed() == 2);
}

TEST_CASE("a missing hook script is reported, not fatal") {
  shoal::daemon::HookRunner runner({"/nonexistent/hook.sh"}, std::chrono::milliseconds(100));
  runner.post({{{"SHOAL_EVENT", "drain"}}});
  runner.drain(std::chrono::milliseconds(5000));
  CHECK(runner.failed() == 1);
}

TEST_CASE("the state saver writes the latest contents, off the caller's thread") {
  TempDir dir;
  const std::string path = dir.path + "/drain.state";
  std::vector<std::string> errors;
  {
    shoal::daemon::StateSaver saver(path, [&](const std::string& m) { errors.push_back(m); });
    for (int i = 0; i < 50; ++i) {
      saver.save("version " + std::to_string(i) + "\n");
    }
    saver.flush();
    CHECK(slurp(path) == "version 49\n");
    saver.save("last\n");
  }  // the destructor finishes the waiting save
  CHECK(slurp(path) == "last\n");
  CHECK(errors.empty());
}

TEST_CASE("a failed save is reported and the next one tries again") {
  TempDir dir;
  std::vector<std::string> errors;
  shoal::daemon::StateSaver saver(dir.path + "/missing/drain.state",
                                  [&](const std::string& m) { errors.push_back(m); });
  saver.save("x\n");
  saver.flush();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("missing") != std::string::npos);
  REQUIRE(::mkdir((dir.path + "/missing").c_str(), 0700) == 0);
  saver.save("y\n");
  saver.flush();
  CHECK(errors.size() == 1);
  CHECK(slurp(dir.path + "/missing/drain.state") == "y\n");
}
