# frozen_string_literal: true

# Runs every *_test.rb here in one process: ruby services/frontend/test/run_all.rb
Dir[File.join(__dir__, '*_test.rb')].sort.each { |file| require file }
