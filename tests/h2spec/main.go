// h2spec's command line, written for this project: the vendored h2spec tree
// (../shared/tools/h2spec-src) ships its library without cmd/. Runs every
// HTTP/2 and HPACK case against one server; exit status 1 when any fails.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/summerwind/h2spec"
	"github.com/summerwind/h2spec/config"
)

func main() {
	c := &config.Config{}
	timeout := flag.Int("o", 2, "seconds to wait for each answer")
	flag.StringVar(&c.Host, "h", "127.0.0.1", "target host")
	flag.IntVar(&c.Port, "p", 0, "target port")
	flag.StringVar(&c.Path, "P", "/", "request path")
	flag.BoolVar(&c.TLS, "t", false, "TLS (ALPN h2)")
	flag.BoolVar(&c.Insecure, "k", false, "do not verify the certificate")
	flag.BoolVar(&c.Strict, "S", false, "strict mode")
	flag.BoolVar(&c.Verbose, "v", false, "verbose")
	flag.StringVar(&c.JUnitReport, "j", "", "JUnit report file")
	flag.Parse()
	c.Timeout = time.Duration(*timeout) * time.Second
	c.MaxHeaderLen = 4000
	c.Sections = flag.Args()
	ok, err := h2spec.Run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
