// note_open opens a C2SP signed note with golang.org/x/mod/sumdb/note, a signed-note implementation the
// station's authors did not write (tests/test_note_interop.py builds it offline from Debian's
// golang-golang-x-mod-dev).
//
// Usage: note_open NOTE_FILE VERIFIER_KEY...
//
// Prints the verified text and exits 0; prints "rejected: <error>" and exits 1 when no given key verifies the
// note or a signature by a given key is invalid; exits 2 on bad usage or an unreadable verifier key.
package main

import (
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: note_open NOTE_FILE VERIFIER_KEY...")
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var verifiers []note.Verifier
	for _, vkey := range os.Args[2:] {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			fmt.Fprintf(os.Stderr, "verifier key %q: %v\n", vkey, err)
			os.Exit(2)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fmt.Printf("rejected: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
}
