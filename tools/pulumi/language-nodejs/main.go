// Command pulumi-language-nodejs is the deployer's own Node.js language host for the pulumi CLI.
//
// Pulumi's language host lives in a nested Go module (sdk/nodejs/cmd/pulumi-language-nodejs) that
// the Go module proxy reachable from these machines does not serve, so `npm run engine:install`
// builds this one instead, against the same sdk/v3 the CLI is built from. It speaks the same
// LanguageRuntime protocol and runs programs the same way: `node @pulumi/pulumi/cmd/run` with the
// engine's monitor address, the stack config in PULUMI_CONFIG and the project's runtime options
// (typescript, tsconfig, nodeargs). Like Pulumi's host it reports the resource plugins of every
// package under the program's node_modules (`"pulumi": {"resource": true}`), so a program that
// drags in @pulumi/aws makes the engine look for the aws plugin exactly as it would with the
// released host.
//
// What it leaves out, because the deployer never uses it: synchronous invokes (the `--sync` pipes),
// `pulumi new` templating, code generation, policy packs, packing and linking SDKs, debugging, and
// installing dependencies (the deployer's programs use the repository's node_modules).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/shlex"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The exit code @pulumi/pulumi's runner uses after it has shown the user an actionable message.
const exitAfterUserActionableMessage = 32

const runModule = "@pulumi/pulumi/cmd/run"

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	cancel        context.Context
	stopAll       context.CancelFunc
}

func main() {
	showVersion := flag.Bool("version", false, "print the plugin version and exit")
	flag.String("tracing", "", "accepted for compatibility; tracing is not supported")
	flag.String("runtime", "nodejs", "accepted for compatibility; only nodejs is supported")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	var engineAddress string
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[0]
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	cancelServe := make(chan bool)
	go func() {
		<-ctx.Done()
		stop()
		close(cancelServe)
	}()
	if engineAddress != "" {
		// Exit when the engine goes away, as Pulumi's plugins do.
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, stop); err != nil {
			cmdutil.Exit(fmt.Errorf("could not start the engine health check: %w", err))
		}
	}
	runs, stopRuns := context.WithCancel(context.Background())
	h := &host{engineAddress: engineAddress, cancel: runs, stopAll: stopRuns}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelServe,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start the language host: %w", err))
	}
	// The spawner reads the port from the first line.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host stopped serving: %w", err))
	}
}

func (h *host) Handshake(ctx context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.engineAddress = req.GetEngineAddress()
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

func (h *host) GetRequiredPlugins(ctx context.Context, _ *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return nil, status.Errorf(codes.Unimplemented, "GetRequiredPlugins is replaced by GetRequiredPackages")
}

// GetRequiredPackages reports the resource plugin of every package under the program's
// node_modules, following symlinks, as Pulumi's host does.
func (h *host) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	packages := packagesIn(req.GetInfo().GetProgramDirectory(), false, map[string]bool{})
	return &pulumirpc.GetRequiredPackagesResponse{Packages: packages}, nil
}

type packageJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Pulumi  struct {
		Resource bool   `json:"resource"`
		Name     string `json:"name"`
		Version  string `json:"version"`
		Server   string `json:"server"`
	} `json:"pulumi"`
}

func packagesIn(dir string, inNodeModules bool, visited map[string]bool) []*pulumirpc.PackageDependency {
	abs, err := filepath.Abs(dir)
	if err != nil || visited[abs] {
		return nil
	}
	visited[abs] = true
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil
	}
	var found []*pulumirpc.PackageDependency
	for _, e := range entries {
		p := filepath.Join(abs, e.Name())
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue
			}
			fi, err := os.Stat(resolved)
			if err != nil {
				continue
			}
			p, isDir = resolved, fi.IsDir()
		}
		if isDir {
			found = append(found, packagesIn(p, inNodeModules || filepath.Base(abs) == "node_modules", visited)...)
			continue
		}
		if !inNodeModules || e.Name() != "package.json" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var info packageJSON
		if json.Unmarshal(b, &info) != nil || !info.Pulumi.Resource {
			continue
		}
		name := info.Pulumi.Name
		if name == "" && strings.HasPrefix(info.Name, "@pulumi/") {
			name = strings.TrimPrefix(info.Name, "@pulumi/")
		}
		v := info.Pulumi.Version
		if v == "" {
			v = info.Version
		}
		if name == "" || v == "" {
			continue
		}
		if !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		found = append(found, &pulumirpc.PackageDependency{Name: name, Kind: "resource", Version: v, Server: info.Pulumi.Server})
	}
	return found
}

// InstallDependencies has nothing to install: the deployer's programs use the repository's node_modules.
func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest, server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]) error {
	return nil
}

func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{Executable: node, Version: strings.TrimPrefix(strings.TrimSpace(string(out)), "v")}, nil
}

func (h *host) RuntimeOptionsPrompts(ctx context.Context, req *pulumirpc.RuntimeOptionsRequest) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

// Cancel stops every program this host runs (the engine calls it when the update is canceled).
func (h *host) Cancel(ctx context.Context, _ *emptypb.Empty) (*emptypb.Empty, error) {
	h.stopAll()
	return &emptypb.Empty{}, nil
}

type runtimeOptions struct {
	typescript   bool
	tsconfigPath string
	nodeArgs     string
}

func optionsOf(opts map[string]any) (runtimeOptions, error) {
	o := runtimeOptions{typescript: true}
	if v, ok := opts["typescript"]; ok {
		b, ok := v.(bool)
		if !ok {
			return o, errors.New("typescript option must be a boolean")
		}
		o.typescript = b
	}
	if v, ok := opts["tsconfig"]; ok {
		s, ok := v.(string)
		if !ok {
			return o, errors.New("tsconfig option must be a string")
		}
		o.tsconfigPath = s
	}
	if v, ok := opts["nodeargs"]; ok {
		s, ok := v.(string)
		if !ok {
			return o, errors.New("nodeargs option must be a string")
		}
		o.nodeArgs = s
	}
	return o, nil
}

// resolveRunner finds @pulumi/pulumi/cmd/run as the program would: from its own directory.
func resolveRunner(ctx context.Context, node, programDir string) (string, error) {
	if p := os.Getenv("PULUMI_LANGUAGE_NODEJS_RUN_PATH"); p != "" {
		return p, nil
	}
	cmd := exec.CommandContext(ctx, node, "-e", "process.stdout.write(require.resolve(process.argv[1]))", runModule)
	cmd.Dir = programDir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("it looks like the Pulumi SDK has not been installed for %s: %s could not be resolved (run `npm ci`)", programDir, runModule)
	}
	// The runner is the package directory; node runs its index.js.
	return filepath.Dir(string(out)), nil
}

func configJSON(req *pulumirpc.RunRequest) (string, error) {
	// @pulumi/pulumi reads keys in the old `<namespace>:config:<name>` form as well as the new one;
	// Pulumi's host sends the old one, and so does this.
	m := map[string]string{}
	for k, v := range req.GetConfig() {
		key, err := config.ParseKey(k)
		if err != nil {
			return "", err
		}
		m[key.Namespace()+":config:"+key.Name()] = v
	}
	b, err := json.Marshal(m)
	return string(b), err
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	node, err := exec.LookPath("node")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "could not find node on the $PATH: " + err.Error()}, nil
	}
	opts, err := optionsOf(info.GetOptions().AsMap())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	runner, err := resolveRunner(ctx, node, info.GetProgramDirectory())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	cfg, err := configJSON(req)
	if err != nil {
		return &pulumirpc.RunResponse{Error: "failed to serialize configuration: " + err.Error()}, nil
	}
	secretKeys, err := json.Marshal(append([]string{}, req.GetConfigSecretKeys()...))
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	args, err := shlex.Split(opts.nodeArgs)
	if err != nil {
		return &pulumirpc.RunResponse{Error: "nodeargs: " + err.Error()}, nil
	}
	args = append(args, runner)
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("organization", req.GetOrganization())
	add("project", req.GetProject())
	add("root-directory", info.GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", info.GetProgramDirectory())
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	entry := info.GetEntryPoint()
	if entry == "" {
		entry = "."
	}
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	env := append(os.Environ(), "PULUMI_CONFIG="+cfg, "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys))
	if opts.typescript {
		env = append(env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}
	if opts.tsconfigPath != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+opts.tsconfigPath)
	}

	// The program stops when the engine cancels (Cancel) or the request ends: first an interrupt,
	// then, after five seconds, a kill.
	cmdCtx, cmdCancel := context.WithCancel(h.cancel)
	defer cmdCancel()
	context.AfterFunc(ctx, cmdCancel)
	cmd := exec.CommandContext(cmdCtx, node, args...)
	cmd.Cancel = func() error {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = info.GetProgramDirectory()
	cmd.Env = env
	// Not the files themselves: node may switch its stdio to non-blocking mode.
	cmd.Stdout = struct{ io.Writer }{os.Stdout}
	cmd.Stderr = struct{ io.Writer }{os.Stderr}

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == exitAfterUserActionableMessage {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: "Problem executing program (could not run language executor): " + err.Error()}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}
