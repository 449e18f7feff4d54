//! The classic greeting, plus an echo of what the image handed the process, so
//! image tests can see the entrypoint's arguments and environment.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("Hello from a scratch image!");
    if !args.is_empty() {
        println!("args: {}", args.join(" "));
    }
    match std::env::var("HELLO_NAME") {
        Ok(name) => println!("HELLO_NAME={name}"),
        Err(_) => println!("HELLO_NAME is not set"),
    }
}
