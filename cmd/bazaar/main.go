// Command bazaar runs every role of Bazaar, the event and job backbone of a
// marketplace: the REST API, the outbox relay, the workers, the scheduler and
// the database migrations, one role per subcommand or all of them at once
// with "bazaar dev". Run "bazaar help" for the list.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bazaar:", err)
		os.Exit(exitCode(err))
	}
}
