// Loads docker-compose.yml with compose-go, the loader `docker compose
// config` uses, once per profile (none, each, all), with the project's .env:
// interpolation, merge keys, references between services, volumes and
// networks, and the compose schema, as Docker Compose would check them.
// Usage: go run . ../../../docker-compose.yml
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
)

func load(file string, profiles []string) ([]string, error) {
	opts, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
		cli.WithName("flowline"),
	)
	if err != nil {
		return nil, err
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		return nil, err
	}
	names := p.ServiceNames()
	sort.Strings(names)
	return names, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: loader docker-compose.yml")
		os.Exit(2)
	}
	file, _ := filepath.Abs(os.Args[1])
	failed := false
	for _, profiles := range [][]string{{}, {"secure"}, {"tools"}, {"*"}} {
		names, err := load(file, profiles)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compose-go: profiles %v: %v\n", profiles, err)
			failed = true
			continue
		}
		fmt.Printf("compose-go: profiles %v: %d services %v\n", profiles, len(names), names)
	}
	if failed {
		os.Exit(1)
	}
}
