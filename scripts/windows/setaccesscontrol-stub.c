/* Test-only stand-in for the E-Port client software's SetAccessControl.exe: prints its
   arguments so that the smoke run can see the proxy found it and ran `-restart -i`. */
#include <stdio.h>
int main(int argc, char **argv) {
    printf("stub SetAccessControl");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    return 0;
}
