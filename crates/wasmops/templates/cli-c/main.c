/* A command: greets, and lists its arguments. */
#include <stdio.h>

int main(int argc, char **argv) {
    printf("Hello from C!\n");
    for (int i = 1; i < argc; i++) {
        printf("arg %d: %s\n", i, argv[i]);
    }
    return 0;
}
