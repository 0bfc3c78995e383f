# Entry point: reads the environment, listens, drains on SIGTERM/SIGINT.
require "./app"

begin
  config = CrystalApp::Config.from_env
rescue ex : CrystalApp::ConfigError
  exit 1 if ARGV.includes?("--healthcheck")
  STDERR.puts({"time" => Time.utc.to_rfc3339(fraction_digits: 3), "service" => ENV["SERVICE_NAME"]? || "crystal",
               "event" => "config_error", "error" => ex.message}.to_json)
  STDERR.flush
  exit CrystalApp::EXIT_CONFIG_ERROR
end

if ARGV.includes?("--healthcheck")
  exit CrystalApp.healthcheck(config.health_port || config.port)
end

service = CrystalApp::Service.new(config)
address = service.bind(config.host, config.port)
STDOUT.puts({"time" => Time.utc.to_rfc3339(fraction_digits: 3), "service" => config.service,
             "event" => "listening", "address" => address.address, "port" => address.port,
             "version" => config.version, "health_port" => config.health_port}.to_json)
if health_port = config.health_port
  health_address = service.bind_health(config.host, health_port)
  STDOUT.puts({"time" => Time.utc.to_rfc3339(fraction_digits: 3), "service" => config.service,
               "event" => "listening", "listener" => "health", "address" => health_address.address,
               "port" => health_address.port}.to_json)
end
STDOUT.flush

drained = Channel(Bool).new
shutdown = ->(signal : String) do
  STDOUT.puts({"time" => Time.utc.to_rfc3339(fraction_digits: 3), "service" => config.service,
               "event" => "shutdown", "signal" => signal}.to_json)
  STDOUT.flush
  spawn { drained.send(service.drain) }
end
Signal::TERM.trap { shutdown.call("SIGTERM") }
Signal::INT.trap { shutdown.call("SIGINT") }

spawn { service.listen }
exit(drained.receive ? 0 : 1)
