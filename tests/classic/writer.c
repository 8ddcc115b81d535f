/* The classic writer.c of shared memory tutorials, with fgets: gets() is
 * gone from C11. Used by tests/interop.rs, tests/docs_sharing.rs and the benchmark. */
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
    key_t key = ftok("shmfile", 65);
    int shmid = shmget(key, 1024, 0666 | IPC_CREAT);
    char *str = (char *)shmat(shmid, (void *)0, 0);
    printf("Write Data : ");
    fgets(str, 1024, stdin);
    printf("Data written in memory: %s\n", str);
    shmdt(str);
    return 0;
}
