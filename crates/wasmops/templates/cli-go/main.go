// A command: greets, and lists its arguments.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("Hello from Go!")
	for i, a := range os.Args[1:] {
		fmt.Printf("arg %d: %s\n", i+1, a)
	}
}
