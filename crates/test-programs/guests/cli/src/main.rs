//! A command-line guest. The first argument picks what it does:
//! `args`, `env`, `read PATH`, `write PATH TEXT`, `ls DIR`, `exit N`, `stdin`,
//! `loop`, `hog`, `panic`, `connect IP:PORT`.
use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("args");
    match cmd {
        "args" => {
            for a in &args {
                println!("{a}");
            }
        }
        "env" => {
            for (k, v) in std::env::vars() {
                println!("{k}={v}");
            }
        }
        "read" => match std::fs::read_to_string(&args[2]) {
            Ok(s) => print!("{s}"),
            Err(e) => {
                eprintln!("cannot read {}: {e}", args[2]);
                std::process::exit(3);
            }
        },
        "write" => match std::fs::write(&args[2], &args[3]) {
            Ok(()) => println!("wrote {}", args[2]),
            Err(e) => {
                eprintln!("cannot write {}: {e}", args[2]);
                std::process::exit(3);
            }
        },
        "ls" => match std::fs::read_dir(&args[2]) {
            Ok(rd) => {
                let mut names: Vec<String> =
                    rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                for n in names {
                    println!("{n}");
                }
            }
            Err(e) => {
                eprintln!("cannot list {}: {e}", args[2]);
                std::process::exit(3);
            }
        },
        "exit" => std::process::exit(args[2].parse().unwrap()),
        "stdin" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).unwrap();
            print!("{s}");
            std::io::stdout().flush().unwrap();
        }
        "loop" => {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = vec![0u8; 1 << 20];
                for i in (0..block.len()).step_by(4096) {
                    block[i] = 1;
                }
                hoard.push(std::hint::black_box(block));
            }
        }
        "panic" => panic!("the cli guest panicked on purpose"),
        "connect" => {
            let r = connect(&args[2]);
            println!("{r}");
            if r != "connected" {
                std::process::exit(4);
            }
        }
        other => {
            eprintln!("unknown command {other}");
            std::process::exit(2);
        }
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn connect(addr: &str) -> String {
    use wasip2::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    let sa: std::net::SocketAddrV4 = addr.parse().expect("IPv4:PORT");
    let o = sa.ip().octets();
    let socket = match wasip2::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Ok(s) => s,
        Err(e) => return format!("denied: create: {e:?}"),
    };
    let network = wasip2::sockets::instance_network::instance_network();
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress { port: sa.port(), address: (o[0], o[1], o[2], o[3]) });
    if let Err(e) = socket.start_connect(&network, remote) {
        return format!("denied: connect: {e:?}");
    }
    let pollable = socket.subscribe();
    loop {
        match socket.finish_connect() {
            Ok(_) => return "connected".into(),
            Err(ErrorCode::WouldBlock) => pollable.block(),
            Err(e) => return format!("denied: finish: {e:?}"),
        }
    }
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn connect(addr: &str) -> String {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => "connected".into(),
        Err(e) => format!("denied: {e}"),
    }
}
