#!/usr/bin/env bash
# Checks the NuGet packages as a user gets them (issue 12, ".NET packages"):
#   1. packs: dotnet pack xmem.slnx -c Release -o artifacts/nuget  →  Xmem (+ .snupkg), Xmem.Cli (a .NET tool),
#      Xmem.Native (libxmem.so + xmem.h from artifacts/native/, so scripts/build-native.sh must have run), and checks
#      what each holds;
#   2. in a temporary directory, a fresh `dotnet new console` project that takes Xmem from the local feed only
#      (nuget.config: the feed for Xmem*, nuget.org for the rest; its own package folder, so no copy cached from an
#      earlier pack is used) runs the README's C# quickstart across two processes and checks every byte
#      (scripts/packages/Program.cs);
#   3. installs the tool (dotnet tool install --tool-path DIR --add-source artifacts/nuget Xmem.Cli) and runs
#      `xmem demo` and `xmem ls`;
#   4. compiles scripts/packages/roundtrip.c with gcc against the extracted Xmem.Native package's header, links its
#      libxmem.so and runs it (two processes, one buffer).
# Pool names are unique per run; the script fails if any of its pools is left in /dev/shm, and removes its
# temporary directory. Prints "test-packages: N passed, N failed" last (scripts/test.sh adds the counts up).
#
# Usage: scripts/test-packages.sh [--no-build]   (--no-build: the solution is already built, as in scripts/test.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build_arg=()
if [[ "${1:-}" == "--no-build" ]]; then
    build_arg=(--no-build)
fi

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
shm_dir="${XMEM_SHM_DIR:-/dev/shm}"
feed="$root/artifacts/nuget"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/xmem-packages.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
run_id="pkg$$-$(date +%s%N | tail -c 7)"
passed=0
failed=0
failures=()

pass() { echo "test-packages: ok: $*"; passed=$((passed + 1)); }
fail() { echo "test-packages: FAILED: $*" >&2; failures+=("$1"); failed=$((failed + 1)); }
finish() {
    if [[ ${#failures[@]} -gt 0 ]]; then
        echo "test-packages: FAILED: ${failures[*]}"
    fi
    echo "test-packages: $passed passed, $failed failed"
    if [[ $failed -eq 0 ]]; then exit 0; else exit 1; fi
}

echo "test-packages: dotnet pack xmem.slnx -c Release -o artifacts/nuget ${build_arg[*]}"
rm -rf "$feed" # this feed holds one pack's packages, no others
if ! dotnet pack xmem.slnx -c Release -o "$feed" -nologo -v:q -p:TreatWarningsAsErrors=true "${build_arg[@]}"; then
    fail "dotnet pack"
    finish
fi
version=""
for f in "$feed"/Xmem.[0-9]*.nupkg; do
    [[ -f "$f" ]] && version="${f##*/Xmem.}" && version="${version%.nupkg}"
done
if [[ -z "$version" ]]; then
    fail "dotnet pack made no Xmem package"
    finish
fi
ls -l "$feed"

# What each package must hold (unzip -l; paths as NuGet stores them).
holds() { # PACKAGE-FILE PATH...
    local pkg="$1" missing=()
    shift
    local listing
    if ! listing="$(unzip -Z1 "$pkg" 2>&1)"; then
        fail "${pkg##*/} is not there or not a package"
        return
    fi
    for p in "$@"; do
        grep -qxF "$p" <<<"$listing" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        pass "${pkg##*/} holds $*"
    else
        fail "${pkg##*/} lacks ${missing[*]}"
    fi
}
holds "$feed/Xmem.$version.nupkg" lib/net10.0/Xmem.dll lib/net10.0/Xmem.xml README.md
holds "$feed/Xmem.$version.snupkg" lib/net10.0/Xmem.pdb
holds "$feed/Xmem.Cli.$version.nupkg" tools/net10.0/any/Xmem.Cli.dll tools/net10.0/any/Xmem.dll \
    tools/net10.0/any/DotnetToolSettings.xml README.md
holds "$feed/Xmem.Native.$version.nupkg" runtimes/linux-x64/native/libxmem.so include/xmem.h README.md
nuspec="$(unzip -p "$feed/Xmem.$version.nupkg" Xmem.nuspec)"
if grep -q '<license type="expression">MIT</license>' <<<"$nuspec" && grep -q '<readme>README.md</readme>' <<<"$nuspec" \
    && grep -q '<tags>' <<<"$nuspec"; then
    pass "Xmem.nuspec has the license (MIT), readme and tags"
else
    fail "Xmem.nuspec lacks the license, readme or tags"
    echo "$nuspec"
fi
# Where the project lives (XmemProjectUrl, src/Directory.Build.props), in every package.
url_missing=()
for id in Xmem Xmem.Cli Xmem.Native; do
    spec="$(unzip -p "$feed/$id.$version.nupkg" "$id.nuspec")"
    grep -qE '<projectUrl>https://[^<]+</projectUrl>' <<<"$spec" && grep -qE '<repository type="git" url="https://' <<<"$spec" \
        || url_missing+=("$id")
done
if [[ ${#url_missing[@]} -eq 0 ]]; then
    pass "Xmem, Xmem.Cli and Xmem.Native name their project and repository URLs"
else
    fail "no projectUrl or repository URL in ${url_missing[*]}"
fi

# The quickstart's nuget.config: Xmem* from the local feed only, the rest from nuget.org. Everything below uses a
# package folder of its own (a package of the same version cached by an earlier run would otherwise be used instead
# of this one).
mkdir -p "$tmp/consumer" "$tmp/tool-user"
cat > "$tmp/consumer/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <config>
    <add key="globalPackagesFolder" value="$tmp/packages" />
  </config>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
  <packageSourceMapping>
    <packageSource key="local">
      <package pattern="Xmem" />
      <package pattern="Xmem.*" />
    </packageSource>
    <packageSource key="nuget.org">
      <package pattern="*" />
    </packageSource>
  </packageSourceMapping>
</configuration>
CONFIG
export NUGET_PACKAGES="$tmp/packages"

echo
echo "test-packages: a fresh console project with the Xmem package, the README's C# quickstart in two processes"
app="$tmp/consumer/Quickstart"
if dotnet new console -o "$app" -n Quickstart --no-restore >/dev/null \
    && cp scripts/packages/Program.cs "$app/Program.cs" \
    && (cd "$app" && dotnet add package Xmem --version "$version" >/dev/null) \
    && (cd "$app" && dotnet build -c Release -nologo -v:q -o "$tmp/quickstart-bin"); then
    if grep -q 'src/Xmem' "$app/obj/project.assets.json" || [[ ! -d "$tmp/packages/xmem/$version" ]]; then
        fail "the quickstart's Xmem did not come from the local feed (obj/project.assets.json)"
    elif timeout 180 "$tmp/quickstart-bin/Quickstart" "xmem-$run_id-quickstart"; then
        pass "Quickstart (package Xmem $version from the local feed): two processes, every byte checked"
    else
        fail "Quickstart (exit code $?)"
    fi
else
    fail "the quickstart project did not build"
fi

echo
echo "test-packages: dotnet tool install --tool-path DIR --add-source artifacts/nuget Xmem.Cli"
# Its own nuget.config, the local feed only: `--add-source` may not be combined with source mapping, and a package of
# the same name and version elsewhere must not stand in for this one (a tool package carries its dependencies).
cat > "$tmp/tool-user/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
  </packageSources>
</configuration>
CONFIG
tools="$tmp/tools"
if (cd "$tmp/tool-user" && dotnet tool install --tool-path "$tools" --add-source "$feed" --version "$version" Xmem.Cli); then
    if timeout 180 "$tools/xmem" demo --frames 20 --consumers 1 --name "xmem-$run_id-demo"; then
        pass "xmem demo (the installed tool)"
    else
        fail "xmem demo (the installed tool; exit code $?)"
    fi
    if timeout 60 "$tools/xmem" ls >/dev/null; then
        pass "xmem ls (the installed tool)"
    else
        fail "xmem ls (the installed tool; exit code $?)"
    fi
else
    fail "dotnet tool install Xmem.Cli"
fi

echo
echo "test-packages: a C program against the Xmem.Native package's header and library"
native="$tmp/xmem-native"
lib="$native/runtimes/linux-x64/native"
if unzip -q "$feed/Xmem.Native.$version.nupkg" -d "$native" \
    && gcc -std=c11 -Wall -Wextra -Werror -I "$native/include" scripts/packages/roundtrip.c -L "$lib" -lxmem \
        -Wl,-rpath,"$lib" -o "$tmp/roundtrip"; then
    if timeout 120 "$tmp/roundtrip" "xmem-$run_id-c"; then
        pass "a C program built against Xmem.Native (gcc, xmem.h, libxmem.so)"
    else
        fail "the C program against Xmem.Native (exit code $?)"
    fi
else
    fail "the C program did not compile against Xmem.Native"
fi

echo
leaks="$(find "$shm_dir" -maxdepth 1 -name "xmem.v1.xmem-$run_id-*" -printf '%f\n' 2>/dev/null || true)"
if [[ -n "$leaks" ]]; then
    fail "left in $shm_dir: $(tr '\n' ' ' <<<"$leaks")"
else
    pass "nothing of this run left in $shm_dir"
fi
finish
